"""`kubetune api FILE` as a process, configured the LLaMA-Factory way through API_* variables."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
import yaml

from kubetune.serve.engine.vllm import wait_ready
from tests.uvicorn_thread import free_port

pytestmark = pytest.mark.slow


def test_api_command_reads_llamafactory_env_and_prints_its_threads(tiny_llama, tmp_path):
    cfg = tmp_path / "api.yaml"
    cfg.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_llama), "infer_backend": "huggingface",
                                   "template": "empty", "do_sample": False, "max_new_tokens": 4}))
    port = free_port()
    env = {**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_KEY": "sk-env",
           "API_MODEL_NAME": "gpt-3.5-turbo", "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen([sys.executable, "-m", "kubetune.cli.main", "api", str(cfg), "--threads", "1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process, "sk-env", timeout_s=240)
        headers = {"Authorization": "Bearer sk-env"}
        assert [m["id"] for m in httpx.get(url + "/v1/models", headers=headers).json()["data"]] == ["gpt-3.5-turbo"]
        r = httpx.post(url + "/v1/chat/completions", headers=headers, timeout=60,
                       json={"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "torch threads: 1 intra-op, 1 inter-op (set explicitly); set OMP_WAIT_POLICY=PASSIVE" in output, output
