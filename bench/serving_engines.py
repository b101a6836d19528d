"""Both serving engines side by side, in one run, on the same model: `kubetune serve` with the hf engine and with
vLLM (the CPU build from hack/setup-vllm.sh, or an installed vllm on a GPU box).

For each engine: start-up time (process start to a served completion), resident memory of the server's process
tree, then streaming chat requests at each concurrency: output tokens/s and time to first token (p50/p95).
Offline: the model is a random Llama built locally (head_dim 64, which vLLM's CPU attention needs) unless
``--model`` names one. Random weights rarely hit EOS, so requests run to ``--max-tokens``.

    python bench/serving_engines.py                       # hf and vllm, concurrency 1 and 8
    python bench/serving_engines.py --engines hf --hidden 512 --layers 4 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "runtime"))

from gpu_serving import CHATML, one_request  # noqa: E402


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (vLLM runs API server, engine core and workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            rss = next(line for line in Path(f"/proc/{current}/status").read_text().splitlines()
                       if line.startswith("VmRSS:"))
            total += int(rss.split()[1])
        except (OSError, StopIteration):
            continue
    return total / 1024


def start(engine: str, model: Path, port: int, workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    from kubetune.serve.engine.vllm import wait_ready

    config = {"model_name_or_path": str(model), "infer_backend": "vllm" if engine == "vllm" else "huggingface",
              "served_model_name": "bench", "host": "127.0.0.1", "port": port, "max_model_len": 1024,
              "infer_dtype": "bfloat16", "max_batch_size": 16}
    cfg = workdir / f"{engine}.yaml"
    cfg.write_text(yaml.safe_dump(config))
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "kubetune.cli.main", "serve", str(cfg)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}", process, None, 1200, model="bench")
    return process, time.perf_counter() - began


async def load(port: int, requests: int, concurrency: int, max_tokens: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=900) as client:
        await one_request(client, url, -1, 8)

        async def bounded(i: int) -> dict[str, float]:
            async with gate:
                return await one_request(client, url, i, max_tokens)

        began = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(requests)))
        wall = time.perf_counter() - began
    ttft = sorted(r["ttft"] for r in results)
    return {"tokens_per_s": sum(r["tokens"] for r in results) / wall, "ttft_p50_s": ttft[len(ttft) // 2],
            "ttft_p95_s": ttft[min(len(ttft) - 1, int(len(ttft) * 0.95))], "wall_s": wall}


def engine_env(engine: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get(
        "OMP_NUM_THREADS", str(os.cpu_count() or 1))}
    if engine == "vllm" and not any((Path(p) / "vllm").exists() for p in env["PATH"].split(":")):
        done = subprocess.run(["bash", str(ROOT / "hack" / "setup-vllm.sh")], capture_output=True, text=True,
                              check=True)
        bin_dir = Path(done.stdout.strip().splitlines()[-1])
        env.update(PATH=f"{env['PATH']}:{bin_dir}", VLLM_CPU_KVCACHE_SPACE="1",
                   VLLM_CACHE_ROOT=str(bin_dir.parent / "cache"))
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="hf,vllm")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--requests", type=int, default=16, help="requests per concurrency level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8432)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from kubetune.model.tiny import build_tiny_model

        model = args.model or build_tiny_model(Path(tmp) / "model", "llama", chat_template=CHATML,
                                               hidden_size=args.hidden, layers=args.layers, heads=args.hidden // 64,
                                               kv_heads=1, intermediate_size=args.hidden * 2)
        for engine in args.engines.split(","):
            process, startup = start(engine, model, args.port, Path(tmp), engine_env(engine))
            try:
                rss = tree_rss_mb(process.pid)
                for level in (int(c) for c in args.concurrency.split(",")):
                    figures = asyncio.run(load(args.port, args.requests, level, args.max_tokens))
                    rows.append({"engine": engine, "concurrency": level, "startup_s": startup, "rss_mb": rss,
                                 **figures})
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                process.terminate()
                process.wait(timeout=120)
    print(f"\n{args.requests} streaming requests x {args.max_tokens} tokens per level\n")
    print("| engine | concurrency | tokens/s | TTFT p50 | TTFT p95 | start-up | RSS |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['concurrency']} | {r['tokens_per_s']:.0f} | {r['ttft_p50_s'] * 1000:.0f} ms | "
              f"{r['ttft_p95_s'] * 1000:.0f} ms | {r['startup_s']:.0f} s | {r['rss_mb'] / 1024:.1f} GB |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
