"""Serve an InferenceService on this machine, in the foreground, until Ctrl-C (or SIGTERM).

The model and adapters resolve as in the cluster: a ``modelExportRef`` serves the exported model, a
``fineTuneJobRef`` serves the job's adapter on its base model (or its full model), ``uri`` sources are used as
given. The serve config comes from :func:`kubetune.config.mapping.serve.serve_config_from_inferenceservice`, the mapping
the serving pod uses; ``backend: hf`` runs kubetune's engine in this process, ``backend: vllm`` starts vLLM's own
server. The record turns Ready (with ``status.url``) once the endpoint answers, which is what scripts wait for.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kubetune.api.conditions import Reason as R
from kubetune.api.inferenceservice import InferenceService
from kubetune.config.mapping.serve import serve_config_from_inferenceservice
from kubetune.config.serve_args import ServeConfig
from kubetune.lifecycle.inferenceservice import (
    DEPLOYING,
    FAILED,
    OWNED,
    READY,
    STOPPED,
    ServingObservation,
    ServingState,
    derive_inferenceservice_status,
)
from kubetune.lifecycle.inputs import Rejection
from kubetune.local.context import LocalContext, Outcome
from kubetune.local.plan import LocalObject
from kubetune.local.sources import Artifact, Unresolved, resolve_source
from kubetune.local.status import Tracker
from kubetune.local.storage import stage_inputs
from kubetune.local.workdir import Record
from kubetune.uris import UriError, UriResolver

Report = Callable[..., None]


@dataclass
class ServedModel:
    """Local paths of what one InferenceService serves."""

    model_path: str
    model_adapter: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    source: str | None = None


class ModelError(ValueError):
    """A resolved source that cannot be served (wrong artifact type)."""


def _model_paths(artifact: Artifact, resolver: UriResolver) -> tuple[str, str | None]:
    """(model directory, adapter answering to the served name) for a resolved model source."""
    path = resolver.resolve(artifact.uri)
    if artifact.artifact_type != "lora-adapter":
        return path, None
    base = artifact.base_model_path(resolver)
    if base is None:
        raise ModelError(f"{artifact.origin_name}: the adapter's manifest names no base model")
    return base, path


def resolve_served(isvc: InferenceService, resolutions: list[Artifact], resolver: UriResolver) -> ServedModel:
    """Local paths for the model (first resolution) and the adapters (the rest, in spec order)."""
    model, *adapters = resolutions
    path, adapter = _model_paths(model, resolver)
    served = ServedModel(path, adapter, source="/".join(model.origin) if model.origin else None)
    for spec, artifact in zip(isvc.spec.adapters or [], adapters, strict=True):
        if artifact.artifact_type not in (None, "lora-adapter"):
            raise ModelError(f"spec.adapters {spec.name}: {artifact.origin_name} produced a "
                             f"{artifact.artifact_type}, not a LoRA adapter")
        served.adapters[spec.name] = resolver.resolve(artifact.uri)
    return served


def _resolve(obj: LocalObject, ctx: LocalContext, tracker: Tracker) -> list[Artifact] | None:
    isvc = obj.resource
    assert isinstance(isvc, InferenceService)
    found: list[Artifact] = []
    for source in [isvc.spec.model, *(isvc.spec.adapters or [])]:
        resolution = resolve_source(source, obj.namespace, ctx.work)
        if isinstance(resolution, Unresolved):
            report(tracker, unresolved=resolution)
            return None
        found.append(resolution)
    return found


def report(tracker: Tracker, *, fields: dict[str, Any] | None = None, **observed: Any) -> None:
    """Derive the status from what this server observed, with the function the operator uses, and record it."""
    obs = ServingObservation(generation=tracker.generation, now=tracker.clock(), **observed)
    tracker.apply(derive_inferenceservice_status(tracker.status, obs), OWNED, **(fields or {}))


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def local_serve_config(isvc: InferenceService, served: ServedModel, ctx: LocalContext) -> ServeConfig:
    """The serve config of a local run: the mapping the serving pod uses, bound to this run's host and port."""
    config = serve_config_from_inferenceservice(isvc, model_path=served.model_path, adapters=served.adapters,
                                                model_adapter=served.model_adapter, api_key=ctx.api_key)
    return config.model_copy(update={"host": ctx.host, "port": ctx.port or config.port})


def run_inferenceservice(obj: LocalObject, record: Record, tracker: Tracker, ctx: LocalContext) -> Outcome:
    """Serve ``obj`` until stopped, keeping its record current. Returns SERVED after a clean stop."""
    isvc = obj.resource
    assert isinstance(isvc, InferenceService)
    resolver = ctx.resolver(obj)
    artifacts = _resolve(obj, ctx, tracker)
    if artifacts is None:
        return Outcome.BLOCKED
    try:
        served = resolve_served(isvc, artifacts, resolver)
        if isvc.spec.auth and isvc.spec.auth.api_key_secret_ref and not ctx.api_key:
            raise ModelError("spec.auth.apiKeySecretRef: there are no Secrets locally; pass the key with --api-key")
        config = local_serve_config(isvc, served, ctx)
    except (ModelError, UriError, ValueError) as exc:
        report(tracker, rejection=Rejection(R.INVALID_SPEC, str(exc)))
        return Outcome.BLOCKED
    model = {"uri": artifacts[0].uri, **({"source": served.source} if served.source else {})}
    adapters = tuple({"name": n, "uri": a.uri} for n, a in zip(served.adapters, artifacts[1:], strict=True))
    served_report = partial(report, tracker, resolved_model=model, resolved_adapters=adapters)
    problem = stage_inputs(isvc.spec, ctx.mirror_root, [a.uri for a in artifacts] +
                           [a.base_model_uri for a in artifacts], ctx.say)
    if problem:
        _failed(served_report, f"inputs: {problem}")
        return Outcome.FAILED
    if not port_free(config.host, config.port):
        _failed(served_report, f"port {config.port} on {config.host} is in use; pass --port")
        return Outcome.BLOCKED
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    url = f"http://{shown}:{config.port}/v1"
    served_report(serving=ServingState(DEPLOYING, f"loading {served.model_path} ({config.backend} engine)", replicas=1))
    runner = _serve_vllm if config.backend == "vllm" else _serve_hf
    return runner(config, served_report, url)


def _ready(report: Report, url: str, names: list[str], **fields: Any) -> None:
    message = f"serving {', '.join(names)} at {url} (Ctrl-C stops)"
    report(serving=ServingState(READY, message, replicas=1, ready=1), url=url, served_models=tuple(names),
           fields=fields)


def _stopped(report: Report) -> Outcome:
    report(serving=ServingState(STOPPED, "stopped; run again to serve"), fields={"loadedAdapters": None})
    return Outcome.SERVED


def _failed(report: Report, message: str) -> Outcome:
    report(serving=ServingState(FAILED, message, R.FAILED, replicas=1))
    return Outcome.FAILED


def _serve_hf(config: ServeConfig, report: Report, url: str) -> Outcome:
    import uvicorn

    from kubetune.serve.http import uvicorn_config
    from kubetune.serve.server import build_server

    try:
        server = build_server(config)
    except KeyboardInterrupt:
        return _stopped(report)
    except Exception as exc:
        return _failed(report, f"cannot load the model: {exc}")
    names = list(server.chat.models)
    web = uvicorn.Server(uvicorn_config(server.app, config.host, config.port, config.limits, log_level="warning"))

    def announce() -> None:
        while not web.started and not web.should_exit:
            time.sleep(0.05)
        if web.started:
            _ready(report, url, names)

    watcher = threading.Thread(target=announce, daemon=True)
    watcher.start()
    try:
        web.run()  # returns on Ctrl-C / SIGTERM (uvicorn's own handlers)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        web.should_exit = True
        watcher.join(timeout=1)
        server.engine.close()
    return _stopped(report)


def _serve_vllm(config: ServeConfig, report: Report, url: str) -> Outcome:
    from kubetune.config.mapping.vllm import base_model_name, model_adapter
    from kubetune.serve.engine.vllm import VllmError, launch_vllm, sigterm_as_interrupt

    with sigterm_as_interrupt():
        try:
            process = launch_vllm(config)
        except KeyboardInterrupt:
            return _stopped(report)
        except VllmError as exc:
            return _failed(report, str(exc))
        names = [config.model_name, *(a.name for a in config.lora_adapters)]
        if model_adapter(config):
            names.insert(0, base_model_name(config))
        _ready(report, url, names, loadedAdapters=[a.name for a in config.lora_adapters])
        try:
            process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait()
    return _stopped(report)
