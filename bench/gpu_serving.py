"""Serving benchmark: start a server through kubetune's launcher and measure latency and throughput.

Self-contained and offline: it serves ``--model`` (a local directory) or builds a small random Llama locally
(tokenizer from tests/assets), starts the server with kubetune's own launcher on 127.0.0.1 — vLLM's OpenAI server
(``--backend vllm``, needs vllm and a GPU) or kubetune's hf engine (``--backend hf``) — then sends a bounded number
of streaming chat requests at a fixed concurrency and prints time to first token, latency percentiles and
throughput. Random weights do not stop early, so every request generates exactly ``--max-tokens`` tokens
(``ignore_eos``-like behaviour without a vendor flag).

    python bench/gpu_serving.py --backend vllm --requests 256 --concurrency 32
    python bench/gpu_serving.py --backend hf --model /models/qwen2.5-0.5b --requests 64 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_model(out: Path, hidden: int, layers: int) -> Path:
    from kubetune.model.tiny import build_tiny_model

    return build_tiny_model(out, "llama", chat_template=CHATML, hidden_size=hidden, layers=layers,
                            heads=hidden // 64, kv_heads=max(hidden // 256, 1), intermediate_size=hidden * 4)


def start_server(args: argparse.Namespace, model: Path, workdir: Path) -> subprocess.Popen:
    """Start `kubetune serve` (it launches vLLM itself for the vllm backend) and wait for /v1/models."""
    from kubetune.serve.engine.vllm import wait_ready

    config = {"model_name_or_path": str(model), "infer_backend": args.backend, "served_model_name": "bench",
              "host": "127.0.0.1", "port": args.port, "max_model_len": 2048, "max_batch_size": args.concurrency}
    if args.backend == "vllm":
        config["gpu_memory_utilization"] = args.gpu_util
    cfg = workdir / "serve.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "kubetune.cli.main", "serve", str(cfg)], env=env)
    start = time.perf_counter()
    wait_ready(f"http://127.0.0.1:{args.port}", process, None, args.startup_timeout)
    print(f"server ready in {time.perf_counter() - start:.1f}s", flush=True)
    return process


async def one_request(client: httpx.AsyncClient, url: str, i: int, max_tokens: int) -> dict[str, float]:
    body = {"model": "bench", "stream": True, "max_tokens": max_tokens, "temperature": 0.0,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Request {i}: write about the number {i * 7919 % 1000}."}]}
    start = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - start
    return {"latency": time.perf_counter() - start, "ttft": first or 0.0, "tokens": tokens}


async def load(args: argparse.Namespace) -> tuple[list[dict[str, float]], float]:
    url = f"http://127.0.0.1:{args.port}/v1/chat/completions"
    gate = asyncio.Semaphore(args.concurrency)
    async with httpx.AsyncClient(timeout=600) as client:
        await one_request(client, url, -1, 8)  # warm-up (compilation, CUDA graphs, caches)

        async def bounded(i: int) -> dict[str, float]:
            async with gate:
                return await one_request(client, url, i, args.max_tokens)

        start = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(args.requests)))
        return list(results), time.perf_counter() - start


def report(args: argparse.Namespace, results: list[dict[str, float]], wall: float) -> dict[str, float]:
    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]

    lat = [r["latency"] for r in results]
    ttft = [r["ttft"] for r in results]
    tokens = sum(r["tokens"] for r in results)
    figures = {"requests": len(results), "concurrency": args.concurrency, "max_tokens": args.max_tokens,
               "wall_s": wall, "output_tokens": tokens, "output_tokens_per_s": tokens / wall,
               "requests_per_s": len(results) / wall, "latency_p50_s": pct(lat, 50), "latency_p95_s": pct(lat, 95),
               "ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95)}
    print(f"\n{args.backend} backend, {figures['requests']} requests, concurrency {args.concurrency}, "
          f"{args.max_tokens} tokens each")
    for key, value in figures.items():
        print(f"  {key:<22} {value:.3f}" if isinstance(value, float) else f"  {key:<22} {value}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["vllm", "hf"], default="vllm")
    parser.add_argument("--model", type=Path, help="local model directory (default: build a random Llama)")
    parser.add_argument("--hidden", type=int, default=1024, help="hidden size of the built model")
    parser.add_argument("--layers", type=int, default=8, help="layers of the built model")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--port", type=int, default=8431)
    parser.add_argument("--gpu-util", type=float, default=0.5)
    parser.add_argument("--startup-timeout", type=float, default=900)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(Path(tmp) / "model", args.hidden, args.layers)
        server = start_server(args, model, Path(tmp))
        try:
            results, wall = asyncio.run(load(args))
        finally:
            server.terminate()
            server.wait(timeout=60)
    figures = report(args, results, wall)
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, **figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "runtime"))
    sys.exit(main())
