"""The ``vllm`` engine: vLLM's own OpenAI server, rendered from a ServeConfig and started as a subprocess.

vLLM is never imported here: :func:`render_vllm_command` is a pure function (table-tested) and the launcher only
runs the ``vllm`` executable. The API key travels in ``VLLM_API_KEY`` rather than ``--api-key`` so it does not
show in process listings or in a pod's command line (in a cluster it comes from the Secret as that variable).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kubetune.serve.config import ServeConfig

# kubetune tool-call syntaxes -> vLLM tool parsers
VLLM_TOOL_PARSERS = {"hermes": "hermes", "mistral": "mistral", "llama3": "llama3_json"}


class VllmError(RuntimeError):
    """vLLM cannot serve this config, is not installed, or did not become ready."""


@dataclass(frozen=True)
class VllmCommand:
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


def _lora_modules(config: ServeConfig) -> tuple[str, list[str]]:
    """(name for the base model, ``name=path`` LoRA modules)."""
    if len(config.adapter_name_or_path) > 1:
        raise VllmError("vllm serves adapters unmerged and adapter_name_or_path lists several: merge them with "
                        "`kubetune export`, or name each one under lora_adapters")
    default = config.default_adapter or (config.adapter_name_or_path[0] if config.adapter_name_or_path else None)
    modules = [f"{a.name}={a.path}" for a in config.lora_adapters]
    if default is None:
        return config.model_name, modules
    # the served name must reach the adapter, so the bare base model answers to <name>-base
    return f"{config.model_name}-base", [f"{config.model_name}={default}", *modules]


def render_vllm_command(config: ServeConfig, executable: str = "vllm") -> VllmCommand:
    """The argv (and environment) that runs vLLM's OpenAI server for ``config``. Pure: no I/O.

    Raises VllmError for configs vLLM cannot serve.
    """
    base_name, modules = _lora_modules(config)
    argv = [executable, "serve", config.model_name_or_path, "--host", config.host, "--port", str(config.port),
            "--served-model-name", base_name, "--tensor-parallel-size", str(config.tensor_parallel_size)]
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
    if modules:
        argv += ["--enable-lora", "--lora-modules", *modules]
        argv += ["--max-loras", str(config.max_loras or max(len(modules), 1))]
        if config.max_lora_rank is not None:
            argv += ["--max-lora-rank", str(config.max_lora_rank)]
    if config.tool_format:
        if config.tool_format not in VLLM_TOOL_PARSERS:
            raise VllmError(f"tool_format {config.tool_format!r} has no vLLM parser "
                            f"(known: {', '.join(VLLM_TOOL_PARSERS)})")
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", VLLM_TOOL_PARSERS[config.tool_format]]
    overrides = _generation_overrides(config)
    if overrides:
        argv += ["--override-generation-config", json.dumps(overrides, sort_keys=True)]
    argv += _engine_args(config.vllm_config) + list(config.extra_args)
    env = {"VLLM_API_KEY": config.api_key} if config.api_key else {}
    return VllmCommand(argv=argv, env=env)


def find_vllm() -> str:
    """Path of the ``vllm`` executable (next to this Python first). Raises VllmError when vLLM is missing."""
    beside = Path(sys.executable).with_name("vllm")
    found = str(beside) if beside.is_file() else shutil.which("vllm")
    if not found:
        raise VllmError("infer_backend vllm needs vLLM on a GPU machine: pip install 'kubetune[vllm]' "
                        "(or use infer_backend: huggingface)")
    return found


def wait_ready(url: str, process: subprocess.Popen, api_key: str | None, timeout_s: float) -> None:
    """Poll ``url``/v1/models until it answers 200; raise VllmError if the process exits or time runs out."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VllmError(f"vLLM exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/v1/models", headers=headers), timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise VllmError(f"vLLM did not answer {url}/v1/models within {timeout_s:.0f}s")


def launch_vllm(config: ServeConfig, timeout_s: float = 1800.0) -> subprocess.Popen:
    """Start vLLM's server for ``config`` and return the process once ``/v1/models`` answers."""
    command = render_vllm_command(config, executable=find_vllm())
    print("starting vLLM: " + " ".join(command.argv), flush=True)
    process = subprocess.Popen(command.argv, env={**os.environ, **command.env})
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    try:
        wait_ready(f"http://{host}:{config.port}", process, config.api_key, timeout_s)
    except BaseException:
        process.terminate()
        raise
    print(f"vLLM ready on http://{host}:{config.port}/v1 (models: {config.model_name})", flush=True)
    return process
