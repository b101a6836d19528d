"""InferenceService -> ServeConfig: what the serving pod runs and what `kubetune run` serves with.

:func:`serve_config_from_inferenceservice` maps an InferenceService whose sources are local paths (the operator
and the local runner resolve references first); :func:`resolve_inferenceservice` covers uri sources. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubetune.api.inferenceservice import InferenceService
from kubetune.config.serve_args import LoraAdapter, ServeConfig
from kubetune.config.serve_limits import ServerLimits
from kubetune.uris import UriError, UriResolver


def serve_config_from_inferenceservice(isvc: InferenceService, *, model_path: str, adapters: Mapping[str, str],
                                       model_adapter: str | None = None, api_key: str | None = None) -> ServeConfig:
    """Map an InferenceService whose sources are already local paths onto :class:`ServeConfig`.

    Args:
        isvc: the resource.
        model_path: the model directory (for a FineTuneJob source: its base model).
        adapters: served adapter name -> adapter directory, for ``spec.adapters``.
        model_adapter: adapter directory answering to the served name (a FineTuneJob source's adapter).
        api_key: the key read from ``spec.auth.apiKeySecretRef`` (the caller reads the Secret or env).
    """
    spec, engine = isvc.spec, isvc.spec.engine
    return ServeConfig(
        model_name_or_path=model_path,
        lora_adapters=[LoraAdapter(name=n, path=p) for n, p in adapters.items()],
        default_adapter=model_adapter,
        infer_backend=engine.backend,
        infer_dtype=engine.dtype,
        served_model_name=spec.served_model_name or str(isvc.metadata.get("name") or "model"),
        port=spec.port,
        api_key=api_key,
        max_model_len=engine.max_model_len,
        threads=engine.threads,
        tensor_parallel_size=engine.tensor_parallel_size,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        max_loras=engine.max_loras,
        max_lora_rank=engine.max_lora_rank,
        # `adapters: []` keeps LoRA on, so the first adapter added later loads without a restart
        enable_lora=True if spec.adapters is not None else None,
        extra_args=list(engine.extra_args),
        limits=ServerLimits.model_validate(spec.limits.serve_config() if spec.limits else {}),
    )


def serve_pod_config(config: ServeConfig) -> dict[str, Any]:
    """The pod contract of the ``hf`` backend: the file ``kubetune serve FILE`` reads, as flat keys.

    Defaults are left out; host and port are always written. The API key never is: the server reads it from its
    environment (in a cluster, from the Secret). ``ServeConfig.model_validate`` of the result gives ``config`` back.
    """
    flat = config.model_dump(mode="json", exclude_defaults=True, exclude={"api_key"})
    return {**flat, "host": config.host, "port": config.port}


def resolve_inferenceservice(isvc: InferenceService, resolver: UriResolver, api_key: str | None = None
                             ) -> ServeConfig:
    """The serve config of an InferenceService whose model and adapters are given by URI.

    Raises UriError for fineTuneJobRef/modelExportRef sources: `kubetune run` or the operator resolves those
    and calls :func:`serve_config_from_inferenceservice` with the paths.
    """
    spec = isvc.spec
    refs: list[Any] = [spec.model, *list(spec.adapters or [])]  # model and adapter sources share the ref fields
    if any(s.fine_tune_job_ref or s.model_export_ref for s in refs):
        raise UriError("this InferenceService references other objects: serve it with `kubetune run` (which "
                       "resolves fineTuneJobRef/modelExportRef) or give uri sources")
    assert spec.model.uri is not None
    adapters = {a.name: resolver.resolve(a.uri) for a in spec.adapters or [] if a.uri}
    return serve_config_from_inferenceservice(isvc, model_path=resolver.resolve(spec.model.uri), adapters=adapters,
                                              api_key=api_key)


def read_wanted(path: str | Path) -> dict[str, str]:
    """The adapter list file: ``{"adapters": [{"name": ..., "path": ...}, ...]}`` -> name -> path.

    A missing file means no adapters (the ConfigMap volume may not be populated yet).
    """
    file = Path(path)
    if not file.exists():
        return {}
    data = json.loads(file.read_text() or "{}")
    return {str(a["name"]): str(a["path"]) for a in data.get("adapters") or []}


def render_wanted(adapters: Mapping[str, str]) -> str:
    """The adapter list file for ``adapters`` (name -> path): what :func:`read_wanted` reads. Pure."""
    return json.dumps({"adapters": [{"name": n, "path": p} for n, p in adapters.items()]}, indent=2) + "\n"
