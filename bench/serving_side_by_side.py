"""`kubetune serve` (hf engine) and LLaMA-Factory's `llamafactory-cli api` side by side, quiet and under load.

Both servers serve the same random Llama (built locally from tests/assets/tokenizer: nothing is downloaded) with
the llama3 template in float32, and are driven by the official ``openai`` client: ``--requests`` chat completions
of ``--max-tokens`` tokens (greedy) at each concurrency. Conditions are *quiet* and *load*: ``--load-procs``
busy-looping processes that the benchmark starts before the load cells and stops after them (each also exits by
itself after ``--load-max-s``, so no run leaves load behind). Rounds interleave conditions and servers, so slow
drift of a shared machine hits every server alike; each row records the 1-minute load average at its end.

``--servers`` may add ``before``: kubetune from another checkout (``--before-src``, its ``runtime/`` folder) for
before/after figures on the same run. LLaMA-Factory comes from bench/setup-llamafactory.sh.

    python bench/serving_side_by_side.py --models tiny,medium --rounds 3 --out /tmp/sbs.jsonl
    python bench/serving_side_by_side.py --servers kubetune,llamafactory,before --before-src /path/to/old/runtime
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from openai import AsyncOpenAI

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # the LLaMA-Factory CPU reference's tiny and small Llamas, on kubetune's test tokenizer
    "tiny": {"hidden_size": 128, "layers": 4, "heads": 4, "kv_heads": 4, "intermediate_size": 256},
    "medium": {"hidden_size": 512, "layers": 4, "heads": 8, "kv_heads": 8, "intermediate_size": 1408},
}
SERVERS = ("kubetune", "llamafactory", "before")  # ports --port, --port + 1, --port + 2


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    ready_s: float


def llamafactory_bin() -> Path:
    done = subprocess.run(["bash", str(ROOT / "bench" / "setup-llamafactory.sh")], capture_output=True, text=True,
                          check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def port_of(name: str, args: argparse.Namespace) -> int:
    return args.port + SERVERS.index(name)


def server_command(name: str, model: Path, workdir: Path, args: argparse.Namespace) -> tuple[list[str], dict]:
    """argv and environment of one server on ``model``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    port = port_of(name, args)
    cfg = workdir / f"{name}.yaml"
    if name == "llamafactory":
        cfg.write_text(yaml.safe_dump({"model_name_or_path": str(model), "template": "llama3",
                                       "infer_backend": "huggingface", "infer_dtype": "float32"}))
        env.update(API_HOST="127.0.0.1", API_PORT=str(port))
        return [str(args.lf_bin / "llamafactory-cli"), "api", str(cfg)], env
    cfg.write_text(yaml.safe_dump({"model_name_or_path": str(model), "template": "llama3", "infer_dtype": "float32",
                                   "served_model_name": "bench", "host": "127.0.0.1", "port": port,
                                   "max_batch_size": 16}))
    if name == "before":
        env["PYTHONPATH"] = str(args.before_src)
    return [sys.executable, "-m", "kubetune.cli.main", "serve", str(cfg)], env


def wait_ready(port: int, process: subprocess.Popen, log: Path, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise RuntimeError(f"server on port {port} exited with {process.returncode}:\n{tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f}s; see {log}")


@contextmanager
def running(names: list[str], model: Path, workdir: Path, args: argparse.Namespace):
    """Start every server at once (start-up overlaps), wait until each serves, stop them all on exit."""
    began = time.perf_counter()
    launched: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        for name in names:
            argv, env = server_command(name, model, workdir, args)
            log = workdir / f"{name}.log"
            with log.open("w") as out:
                launched.append((name, subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT), log))
        servers = []
        for name, process, log in launched:
            wait_ready(port_of(name, args), process, log)
            servers.append(Server(name, port_of(name, args), process, time.perf_counter() - began))
        yield servers
    finally:
        for _, process, _ in launched:
            process.terminate()
        for _, process, _ in launched:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def background_load(procs: int, max_s: float):
    """``procs`` busy loops, each bounded by ``max_s`` seconds, stopped on exit."""
    code = f"import time\nend = time.monotonic() + {max_s}\nwhile time.monotonic() < end:\n    pass\n"
    workers = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(procs)]
    try:
        time.sleep(2)  # let the scheduler see them before the first request
        yield
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait()


async def one(client: AsyncOpenAI, i: int, max_tokens: int) -> tuple[float, int]:
    began = time.perf_counter()
    reply = await client.chat.completions.create(
        model="bench", max_tokens=max_tokens, temperature=0,
        messages=[{"role": "user", "content": f"Request {i}: write about the number {i * 7919 % 1000}."}])
    return time.perf_counter() - began, reply.usage.completion_tokens if reply.usage else 0


async def measure(port: int, requests: int, concurrency: int, max_tokens: int) -> dict[str, float]:
    """Tokens/s over the whole batch of requests and per-request latency percentiles."""
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=1800)
    gate = asyncio.Semaphore(concurrency)
    await one(client, -1, 8)  # warm-up

    async def bounded(i: int) -> tuple[float, int]:
        async with gate:
            return await one(client, i, max_tokens)

    began = time.perf_counter()
    results = await asyncio.gather(*(bounded(i) for i in range(requests)))
    wall = time.perf_counter() - began
    await client.close()
    latency = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "p50_s": statistics.median(latency),
            "p95_s": latency[min(len(latency) - 1, round(0.95 * (len(latency) - 1)))]}


def run_model(model_name: str, model: Path, workdir: Path, args: argparse.Namespace, out) -> list[dict]:
    rows = []
    with running(args.servers.split(","), model, workdir, args) as servers:
        for server in servers:
            print(f"{model_name}: {server.name} ready {server.ready_s:.1f}s after the start (all start together)",
                  flush=True)
            first = (workdir / f"{server.name}.log").read_text().splitlines()
            print("  " + "\n  ".join(line for line in first if "torch threads" in line), flush=True)
        for round_ in range(args.rounds):
            conditions = ["quiet", "load"] if round_ % 2 == 0 else ["load", "quiet"]
            for condition in conditions:
                with background_load(args.load_procs if condition == "load" else 0, args.load_max_s):
                    for concurrency in (int(c) for c in args.concurrency.split(",")):
                        order = servers if round_ % 2 == 0 else servers[::-1]
                        for server in order:
                            figures = asyncio.run(measure(server.port, args.requests, concurrency, args.max_tokens))
                            row = {"model": model_name, "round": round_, "condition": condition,
                                   "concurrency": concurrency, "server": server.name,
                                   "loadavg_1m": os.getloadavg()[0], **figures}
                            rows.append(row)
                            out.write(json.dumps(row) + "\n")
                            out.flush()
                            print(json.dumps(row), flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    """Median per cell, the load averages seen, and kubetune / LLaMA-Factory ratios of the medians."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["condition"], r["concurrency"], r["server"]), []).append(r)
    lines = ["| model | condition | conc. | server | runs | tokens/s (median) | p50 latency | p95 latency | "
             "load avg | vs LLaMA-Factory |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (model, condition, conc, server), group in sorted(cells.items()):
        tps = statistics.median(r["tokens_per_s"] for r in group)
        lf = cells.get((model, condition, conc, "llamafactory"))
        ratio = f"{tps / statistics.median(r['tokens_per_s'] for r in lf):.2f}×" if lf and server != "llamafactory" \
            else ""
        loads = [r["loadavg_1m"] for r in group]
        lines.append(f"| {model} | {condition} | {conc} | {server} | {len(group)} | {tps:.0f} | "
                     f"{statistics.median(r['p50_s'] for r in group):.2f} s | "
                     f"{statistics.median(r['p95_s'] for r in group):.2f} s | "
                     f"{min(loads):.1f}–{max(loads):.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,medium", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--servers", default="kubetune,llamafactory", help="kubetune, llamafactory, before")
    parser.add_argument("--before-src", type=Path, help="the runtime/ folder of the checkout to measure as before")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--load-procs", type=int, default=2, help="busy-looping processes in the load condition")
    parser.add_argument("--load-max-s", type=float, default=1200, help="each load process exits after this")
    parser.add_argument("--port", type=int, default=8461, help="first of three ports (one per server)")
    parser.add_argument("--out", type=Path, default=Path("serving_side_by_side.jsonl"), help="rows, appended")
    parser.add_argument("--summarize", type=Path, help="only print the table of an existing rows file")
    args = parser.parse_args()
    if args.summarize:
        print(summary([json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]))
        return 0
    if "before" in args.servers.split(",") and not args.before_src:
        parser.error("--servers before needs --before-src")
    args.lf_bin = llamafactory_bin() if "llamafactory" in args.servers.split(",") else None
    sys.path.insert(0, str(ROOT / "runtime"))
    from kubetune.model.tiny import build_tiny_model

    rows = []
    with tempfile.TemporaryDirectory(prefix="kubetune-sbs-") as tmp, args.out.open("a") as out:
        for name in args.models.split(","):
            model = build_tiny_model(Path(tmp) / name, "llama", **MODELS[name])
            workdir = Path(tmp) / f"{name}-run"
            workdir.mkdir()
            rows += run_model(name, model, workdir, args, out)
    print(f"\n{args.requests} requests x {args.max_tokens} tokens per cell, {args.rounds} interleaved rounds, "
          f"load = {args.load_procs} busy loops\n")
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
