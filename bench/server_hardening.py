"""What hostile clients cost `kubetune serve` (hf engine, tiny model, CPU): memory, and a small request's latency.

    python bench/server_hardening.py [--python PATH] [--paths 20000] [--body-mb 210]

Starts `kubetune serve` as its own process with ``--python`` (default: this interpreter; pass another checkout's
venv python to measure that checkout), then runs each attack while timing one small concurrent chat request
(4 tokens, greedy) and reading the server's RSS from /proc. Prints one markdown table row per attack.
Attacks: a body of ``--body-mb`` MB with a wrong key; ``--paths`` random URLs then /metrics' size and /health;
a 6 MB prompt; 8 non-streaming requests of 1500 tokens abandoned after 0.5 s (and how long the server stays busy
with them); 4 prompts x n=16 x 64 tokens; 400 idle
connections (how many the server still holds 20 s later).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-bench"
HELLO = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def small_request(url: str) -> str:
    start = time.perf_counter()
    try:
        r = httpx.post(url + "/v1/chat/completions", json=HELLO, headers={"Authorization": f"Bearer {KEY}"},
                       timeout=300)
        status = r.status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return f"{time.perf_counter() - start:.2f} s ({status})"


def during(url: str, attack, settle: float = 1.0) -> tuple[str, object]:
    """Run ``attack`` in a thread; after ``settle`` seconds time a small request; return (latency, attack result)."""
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.setdefault("value", attack()), daemon=True)
    worker.start()
    time.sleep(settle)
    latency = small_request(url)
    worker.join(timeout=600)
    return latency, result.get("value")


def big_body(url: str, megabytes: int) -> str:
    def body():
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(megabytes):
            yield b"a" * (1 << 20)
        yield b'"}'

    start = time.perf_counter()
    try:
        r = httpx.post(url + "/v1/completions", content=body(), headers={"Authorization": "Bearer wrong",
                                                                         "Content-Type": "application/json"},
                       timeout=600)
        status = r.status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return f"{status} after {time.perf_counter() - start:.1f} s"


def random_paths(url: str, count: int) -> str:
    async def go() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            sem = asyncio.Semaphore(32)

            async def one() -> None:
                async with sem:
                    await client.get(f"{url}/v1/{uuid.uuid4().hex}")

            await asyncio.gather(*(one() for _ in range(count)))

    asyncio.run(go())
    start = time.perf_counter()
    size = len(httpx.get(url + "/metrics", timeout=600).content)
    metrics_s = time.perf_counter() - start
    return f"/metrics {size / 1e6:.2f} MB in {metrics_s:.2f} s"


def long_prompt(url: str) -> str:
    start = time.perf_counter()
    r = httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=600,
                   json={"model": "tiny", "prompt": "word " * (6 * 1024 * 1024 // 5), "max_tokens": 1})
    return f"{r.status_code} after {time.perf_counter() - start:.1f} s"


def abandoned(url: str) -> str:
    def one() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5,
                       json={"model": "tiny", "prompt": "Once", "max_tokens": 1500, "temperature": 0})

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gone = time.perf_counter()
    while in_flight(url) > 0:  # the server keeps working for clients that left, or not
        time.sleep(0.1)
    return f"clients gone after 0.5 s; server busy for them {time.perf_counter() - gone:.1f} s more"


def in_flight(url: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=600).text.splitlines():
        if line.startswith("kubetune_requests_in_flight "):
            return float(line.split()[1])
    return 0.0


def flood(url: str) -> str:
    start = time.perf_counter()
    r = httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=600,
                   json={"model": "tiny", "prompt": [f"story {i}" for i in range(4)], "n": 16, "max_tokens": 64,
                         "temperature": 0})
    return f"{r.status_code} after {time.perf_counter() - start:.1f} s"


def idle_connections(url: str, pid: int) -> tuple[str, str]:
    port = int(url.rsplit(":", 1)[1])
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(400)]
    latency = small_request(url)
    time.sleep(20)
    held = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            held += sock.recv(1) != b""
        except BlockingIOError:
            held += 1
        except OSError:
            pass
        sock.close()
    return latency, f"{held} of 400 still open after 20 s"


def start_server(python: str, model: Path, port: int) -> subprocess.Popen:
    cfg = model.parent / "serve.yaml"
    cfg.write_text(yaml.safe_dump({"model_name_or_path": str(model), "served_model_name": "tiny",
                                   "infer_backend": "huggingface", "max_batch_size": 16}))
    env = {**os.environ, "API_KEY": KEY, "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    process = subprocess.Popen([python, "-m", "kubetune.cli.main", "serve", str(cfg)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter whose kubetune runs the server")
    parser.add_argument("--paths", type=int, default=20000)
    parser.add_argument("--body-mb", type=int, default=210)
    args = parser.parse_args()
    from kubetune.model.tiny import build_tiny_model

    model = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", "qwen2",
                             chat_template=(ROOT / "tests/assets/chatml_tools.jinja").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = start_server(args.python, model, port)
    pid = server.pid
    try:
        print("| attack | attack's answer | small request meanwhile | server RSS after (peak) |")
        print("|---|---|---|---|")

        def row(name: str, latency: str, outcome: object) -> None:
            print(f"| {name} | {outcome} | {latency} | {rss_mb(pid):.0f} MB ({rss_mb(pid, 'VmHWM'):.0f} MB) |",
                  flush=True)

        small_request(url)  # warm up
        row("none (idle server)", small_request(url), "-")
        row(f"{args.body_mb} MB body, wrong key", *during(url, lambda: big_body(url, args.body_mb)))
        row("6 MB prompt", *during(url, lambda: long_prompt(url), settle=0.5))
        row("8 abandoned 1500-token requests", *during(url, lambda: abandoned(url)))
        row("4 prompts x n=16 x 64 tokens", *during(url, lambda: flood(url), settle=0.5))
        latency, paths = during(url, lambda: random_paths(url, args.paths), settle=0.1)
        health = time.perf_counter()
        httpx.get(url + "/health", timeout=600)
        row(f"{args.paths} random paths", latency, f"{paths}; /health then {time.perf_counter() - health:.2f} s")
        latency, held = idle_connections(url, pid)
        row("400 idle connections", latency, held)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            print("(the server ignored SIGTERM for 60 s)")


if __name__ == "__main__":
    main()
