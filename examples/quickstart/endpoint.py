"""Drive `kubetune run` from a script and ask its endpoint the held-out questions with the openai client.

:func:`serving` starts ``kubetune run FILES`` in the background, waits until the InferenceService's local record
says ``phase: Ready`` and yields its URL; leaving the block stops the command with Ctrl-C (SIGINT), as a person
would. :func:`ask_all` sends each question as a chat completion (greedy decoding) and :func:`accuracy` counts exact
matches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class RunFailed(RuntimeError):
    """`kubetune run` ended before the endpoint was ready."""


@dataclass(frozen=True)
class Answer:
    question: str
    expected: str
    answer: str

    @property
    def correct(self) -> bool:
        return self.answer.strip() == self.expected


def record_path(work_dir: Path, name: str, namespace: str = "default") -> Path:
    return work_dir / "objects" / namespace / "InferenceService" / f"{name}.json"


def wait_ready(process: subprocess.Popen, record: Path, timeout_s: float) -> str:
    """The endpoint URL once ``record`` shows Ready. Raises RunFailed when the command exits first or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RunFailed(f"kubetune run exited with code {process.returncode} before the endpoint was ready")
        try:
            status = json.loads(record.read_text()).get("status") or {}
        except (OSError, ValueError):
            status = {}
        if status.get("phase") == "Ready" and status.get("url"):
            return str(status["url"])
        time.sleep(0.5)
    raise RunFailed(f"the endpoint was not ready within {timeout_s:.0f}s")


def stop(process: subprocess.Popen, timeout_s: float = 60) -> int:
    """Ctrl-C the command and wait for it to finish."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


@contextmanager
def serving(files: Sequence[Path], *, work_dir: Path, service: str, port: int, timeout_s: float = 1800,
            env: dict[str, str] | None = None, extra: Sequence[str] = ()) -> Iterator[str]:
    """Run ``kubetune run FILES`` in the background and yield the endpoint URL while it serves."""
    argv = [sys.executable, "-m", "kubetune.cli.main", "run", *map(str, files), "--work-dir", str(work_dir),
            "--port", str(port), *extra]
    process = subprocess.Popen(argv, env={**os.environ, **(env or {})})
    try:
        yield wait_ready(process, record_path(work_dir, service), timeout_s)
    finally:
        stop(process)


def ask_all(url: str, model: str, rows: Sequence[dict[str, str]], max_tokens: int = 16,
            workers: int = 8) -> list[Answer]:
    """Ask every row's instruction as a chat completion with greedy decoding (temperature 0)."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="local", max_retries=0, timeout=300)

    def ask(row: dict[str, str]) -> Answer:
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": row["instruction"]}],
                                               temperature=0, max_tokens=max_tokens)
        return Answer(row["instruction"], row["output"], reply.choices[0].message.content or "")

    with ThreadPoolExecutor(max_workers=workers) as pool:  # concurrent requests share the engine's batches
        return list(pool.map(ask, rows))


def accuracy(answers: Sequence[Answer]) -> float:
    return sum(a.correct for a in answers) / max(len(answers), 1)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
