"""`kubetune chat FILE`: a terminal chat using the model's template, streaming the reply as it is generated.

Type a message and press Enter; ``/clear`` forgets the conversation, ``/exit`` (or end of input) quits. The
prompt is rendered and sampled exactly as `kubetune serve` does (same OpenAI layer, same hf engine).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from kubetune.config.files import ConfigError
from kubetune.serve.cli import read_serve_config
from kubetune.serve.errors import OpenAIError
from kubetune.uris import UriError


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("file", help="model config (LLaMA-Factory keys) or an InferenceService resource (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys")
    parser.add_argument("--pvc-root", help="directory holding pvc://<claim>/ paths (default /mnt/pvc)")
    parser.add_argument("--model", help="served name of the model or adapter to talk to (default: the base)")


async def _reply(chat, model: str, history: list[dict[str, str]], out: TextIO) -> str:
    from kubetune.serve.openai.protocol import ChatCompletionRequest

    request, _, ticket = await chat.prepare(ChatCompletionRequest(model=model, messages=history, stream=True))
    text = ""
    try:
        async for delta in chat.deltas(request, ticket):
            out.write(delta.text)
            out.flush()
            text += delta.text
    finally:
        ticket.close()
    return text


def chat_loop(chat, model: str, stdin: TextIO, out: TextIO) -> None:
    """Read user turns from ``stdin`` until /exit or end of input; stream replies to ``out``."""
    history: list[dict[str, str]] = []
    out.write(f"chatting with {model}: /clear forgets the conversation, /exit quits\n")
    while True:
        out.write("\nUser: ")
        out.flush()
        line = stdin.readline()
        if not line or line.strip() == "/exit":
            out.write("\n")
            return
        message = line.strip()
        if message == "/clear":
            history = []
            out.write("(history cleared)\n")
            continue
        if not message:
            continue
        history.append({"role": "user", "content": message})
        out.write("Assistant: ")
        try:
            reply = asyncio.run(_reply(chat, model, history, out))
        except OpenAIError as exc:
            out.write(f"\n[error] {exc.message}\n")
            history.pop()
            continue
        history.append({"role": "assistant", "content": reply})
        out.write("\n")


def run(args: argparse.Namespace, command: str) -> int:
    del command
    try:
        config = read_serve_config(args.file, args.overrides, args.pvc_root)
    except (ConfigError, UriError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if config.backend == "vllm":
        print("kubetune chat: generating with the hf engine (vLLM is used by `kubetune serve`)", file=sys.stderr)
    from kubetune.artifacts import ArtifactError
    from kubetune.serve.server import build_server

    try:
        server = build_server(config.model_copy(update={"infer_backend": "hf"}))
    except (ArtifactError, OSError, ValueError) as exc:
        print(f"kubetune chat: cannot load the model: {exc}", file=sys.stderr)
        return 1
    try:
        chat_loop(server.chat, args.model or config.model_name, sys.stdin, sys.stdout)
    finally:
        server.engine.close()
    return 0
