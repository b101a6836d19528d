"""The ``vllm`` engine: vLLM's own OpenAI server, started as a subprocess from a ServeConfig.

vLLM is never imported here. The argv and environment come from
:func:`kubetune.config.mapping.vllm.render_vllm_command`, the same function the operator renders serving pods
with; named adapters are loaded into the running server by :func:`kubetune.serve.adapters.sync`, as the pod's
``adapters`` sidecar does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from kubetune.config.mapping.vllm import (
    VLLM_TOOL_PARSERS,
    VllmCommand,
    VllmError,
    base_model_name,
    model_adapter,
    render_vllm_command,
)
from kubetune.config.serve_args import ServeConfig
from kubetune.serve.adapters import AdapterSyncError, VllmAdmin, sync

__all__ = ["VLLM_TOOL_PARSERS", "VllmCommand", "VllmError", "find_vllm", "launch_vllm", "render_vllm_command",
           "sigterm_as_interrupt", "wait_ready"]


def find_vllm() -> str:
    """Path of the ``vllm`` executable: next to this Python first, else on PATH (vLLM may live in its own
    environment, since its torch often differs from the runtime's). Raises VllmError when it is missing."""
    beside = Path(sys.executable).with_name("vllm")
    found = str(beside) if beside.is_file() else shutil.which("vllm")
    if not found:
        raise VllmError("infer_backend vllm needs the `vllm` executable: pip install 'kubetune[vllm]', or put an "
                        "environment's bin holding vllm on PATH (hack/setup-vllm.sh builds a CPU one); or use "
                        "infer_backend: huggingface")
    return found


def _request(url: str, api_key: str | None, body: dict | None = None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=60) as response:
        response.read()
        return response.status


def wait_ready(url: str, process: subprocess.Popen, api_key: str | None, timeout_s: float,
               model: str | None = None) -> None:
    """Wait until the server at ``url`` answers; raise VllmError if the process exits or time runs out.

    Ready means ``/v1/models`` answers 200 and, when ``model`` is given, a one-token completion for it succeeds:
    a vLLM server can list its models and still fail on the first request (an attention kernel missing for the
    model's head size, say), so only a real completion proves it serves.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VllmError(f"the server exited with code {process.returncode} before it was ready ({last})")
        try:
            if _request(f"{url}/v1/models", api_key) == 200 and (model is None or _request(
                    f"{url}/v1/completions", api_key, {"model": model, "prompt": "ready", "max_tokens": 1}) == 200):
                return
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}: {err.read().decode(errors='replace')[:300]}"
        except (urllib.error.URLError, OSError) as err:
            last = str(err)
        time.sleep(1.0)
    raise VllmError(f"{url} did not serve within {timeout_s:.0f}s ({last})")


def _start(command: VllmCommand) -> subprocess.Popen:
    print("starting vLLM: " + " ".join(command.argv), flush=True)
    return subprocess.Popen(command.argv, env={**os.environ, **command.env})


def launch_vllm(config: ServeConfig, timeout_s: float = 1800.0) -> subprocess.Popen:
    """Start vLLM's server for ``config``, load its named adapters, and return the process once it serves."""
    command = render_vllm_command(config, executable=find_vllm())
    process = _start(command)
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    url = f"http://{host}:{config.port}"
    try:
        wait_ready(url, process, config.api_key, timeout_s, model=base_model_name(config))
        keep = frozenset({config.model_name} if model_adapter(config) else ())
        sync(VllmAdmin(url, config.api_key), {a.name: a.path for a in config.lora_adapters}, keep)
    except AdapterSyncError as exc:
        process.terminate()
        raise VllmError(f"loading the adapters failed: {exc}") from exc
    except BaseException:
        process.terminate()
        raise
    print(f"vLLM ready on {url}/v1 (models: {config.model_name}"
          f"{''.join(', ' + a.name for a in config.lora_adapters)})", flush=True)
    return process


def _interrupt(signum: int, frame: object) -> None:
    del signum, frame
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (`kill`, a process manager, a test's teardown) stops the launcher as Ctrl-C does, so it terminates
    the vLLM server it started instead of dying and leaving it serving, orphaned."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
