"""The serving pod contract of the ``vllm`` backend: one function renders vLLM's command line and environment.

The operator (``kubetune_operator.render.serving``), ``kubetune serve`` and ``kubetune run`` all call
:func:`render_vllm_command` on a :class:`~kubetune.config.serve_args.ServeConfig`, so a pod and a local run of the same
InferenceService start the same server. Torch-free and pure: the operator imports it.

Named adapters (``lora_adapters``) are not on the command line. vLLM starts with LoRA enabled and runtime LoRA
updating allowed, and :mod:`kubetune.serve.adapters` loads and unloads them in the running server. So adding or
removing an adapter never changes the argv, and in a cluster never rolls the pods. Only an adapter that *is* the
served model (``default_adapter``, a FineTuneJob's output) is on the command line: changing it changes the model.

The API key travels in ``VLLM_API_KEY`` rather than ``--api-key``, so it does not show in process listings or in a
pod's command line (in a cluster the kubelet sets it from the Secret).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kubetune.config.serve_args import ServeConfig

API_KEY_ENV = "VLLM_API_KEY"
# Lets /v1/load_lora_adapter and /v1/unload_lora_adapter change the adapters of a running server.
RUNTIME_LORA_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
# vLLM reports usage statistics to its authors unless told not to; a served model is nobody else's business.
BASE_ENV = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1"}
# kubetune tool-call syntaxes -> vLLM tool parsers
VLLM_TOOL_PARSERS = {"hermes": "hermes", "mistral": "mistral", "llama3": "llama3_json"}


class VllmError(RuntimeError):
    """vLLM cannot serve this config, is not installed, or did not become ready."""


@dataclass(frozen=True)
class VllmCommand:
    """What a vLLM server process gets: argv and environment (the API key only when the config carries it)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _engine_args(extra: dict[str, object]) -> list[str]:
    out: list[str] = []
    for key, value in extra.items():
        if value is True:
            out.append(_flag(key))
        elif value is False:
            out.append("--no-" + key.replace("_", "-"))
        elif value is not None:
            out += [_flag(key), json.dumps(value) if isinstance(value, dict | list) else str(value)]
    return out


def _generation_overrides(config: ServeConfig) -> dict[str, object]:
    out: dict[str, object] = {}
    if config.do_sample is False:
        out["temperature"] = 0.0
    for key in ("temperature", "top_p", "top_k"):
        if getattr(config, key) is not None:
            out[key] = getattr(config, key)
    if config.max_new_tokens is not None:
        out["max_new_tokens"] = config.max_new_tokens
    return out


def model_adapter(config: ServeConfig) -> str | None:
    """The adapter that answers to the served name (LLaMA-Factory's single ``adapter_name_or_path`` or
    ``default_adapter``). Raises VllmError for several unnamed adapters: vLLM serves adapters unmerged."""
    if len(config.adapter_name_or_path) > 1:
        raise VllmError("vllm serves adapters unmerged and adapter_name_or_path lists several: merge them with "
                        "`kubetune export`, or name each one under lora_adapters")
    return config.default_adapter or (config.adapter_name_or_path[0] if config.adapter_name_or_path else None)


def base_model_name(config: ServeConfig) -> str:
    """The name vLLM serves the bare base model under: the served name, or ``<name>-base`` when an adapter
    answers to the served name itself."""
    return f"{config.model_name}-base" if model_adapter(config) else config.model_name


def lora_enabled(config: ServeConfig) -> bool:
    """LoRA is on when asked (``enable_lora``) or when there is an adapter to serve."""
    if config.enable_lora is not None:
        return config.enable_lora or bool(model_adapter(config))
    return bool(model_adapter(config) or config.lora_adapters)


def _lora_args(config: ServeConfig) -> list[str]:
    default = model_adapter(config)
    if not lora_enabled(config):
        return []
    args = ["--enable-lora"]
    if default:
        args += ["--lora-modules", f"{config.model_name}={default}"]
    # An InferenceService always sets max_loras, so the argv does not depend on how many adapters there are.
    slots = config.max_loras or max(len(config.lora_adapters) + (1 if default else 0), 1)
    args += ["--max-loras", str(slots)]
    if config.max_lora_rank is not None:
        args += ["--max-lora-rank", str(config.max_lora_rank)]
    return args


def render_vllm_command(config: ServeConfig, executable: str = "vllm") -> VllmCommand:
    """The argv and environment that run vLLM's OpenAI server for ``config``. Pure: no I/O.

    ``config.lora_adapters`` are not in the result: they are loaded into the running server (see the module doc).
    Raises VllmError for configs vLLM cannot serve.
    """
    argv = [executable, "serve", config.model_name_or_path, "--host", config.host, "--port", str(config.port),
            "--served-model-name", base_model_name(config),
            "--tensor-parallel-size", str(config.tensor_parallel_size)]
    if config.infer_dtype != "auto":
        argv += ["--dtype", config.infer_dtype]
    if config.max_model_len is not None:
        argv += ["--max-model-len", str(config.max_model_len)]
    if config.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    if config.vllm_enforce_eager:
        argv.append("--enforce-eager")
    if config.trust_remote_code:
        argv.append("--trust-remote-code")
    argv += _lora_args(config)
    if config.tool_format:
        if config.tool_format not in VLLM_TOOL_PARSERS:
            raise VllmError(f"tool_format {config.tool_format!r} has no vLLM parser "
                            f"(known: {', '.join(VLLM_TOOL_PARSERS)})")
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", VLLM_TOOL_PARSERS[config.tool_format]]
    overrides = _generation_overrides(config)
    if overrides:
        argv += ["--override-generation-config", json.dumps(overrides, sort_keys=True)]
    argv += _engine_args(config.vllm_config) + list(config.extra_args)
    env = {**BASE_ENV, **(RUNTIME_LORA_ENV if lora_enabled(config) else {})}
    if config.api_key:
        env[API_KEY_ENV] = config.api_key
    return VllmCommand(argv=argv, env=env)
