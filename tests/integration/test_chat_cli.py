"""`kubetune chat` driven through stdin with a tiny model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.config.serve_args import ServeConfig
from kubetune.model.tiny import build_tiny_model
from kubetune.serve.openai.protocol import ChatCompletionRequest
from kubetune.serve.server import build_server

pytestmark = pytest.mark.slow
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_chat_streams_replies_and_handles_clear_and_exit(tmp_path):
    model = build_tiny_model(tmp_path / "model", "qwen2", chat_template=(ASSETS / "chatml_tools.jinja").read_text())
    settings = {"model_name_or_path": str(model), "do_sample": False, "max_new_tokens": 8, "template": None,
                "finetuning_type": "lora"}
    cfg = tmp_path / "chat.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    run = subprocess.run([sys.executable, "-m", "kubetune.cli.main", "chat", str(cfg)],
                         input="hello\n/clear\nhello\nhow are you\n/exit\n", capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "(history cleared)" in out
    replies = [part.split("\n\nUser: ")[0] for part in out.split("Assistant: ")[1:]]
    assert len(replies) == 3

    server = build_server(ServeConfig.model_validate(settings))
    try:
        expected = asyncio.run(server.chat.complete(ChatCompletionRequest(
            model=server.chat.config.model_name, messages=[{"role": "user", "content": "hello"}])))
    finally:
        server.engine.close()
    text = expected.choices[0].message.content
    assert replies[0] == text and replies[1] == text  # /clear: the second "hello" starts a fresh conversation
