"""Local processes for the control plane: free loopback ports, logged children, health polling, PID teardown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class StartError(RuntimeError):
    """A component did not become healthy; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a PID from /proc, or None when it does not exist."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


@dataclass
class Process:
    """A started component: its name, PID (with start time, so a recycled PID is never mistaken), argv and log."""

    name: str
    pid: int
    start_ticks: int
    argv: list[str]
    log: Path

    def to_json(self) -> dict:
        return {"name": self.name, "pid": self.pid, "start_ticks": self.start_ticks, "argv": self.argv,
                "log": str(self.log)}

    @classmethod
    def from_json(cls, data: dict) -> Process:
        return cls(data["name"], data["pid"], data["start_ticks"], data["argv"], Path(data["log"]))

    def alive(self) -> bool:
        """True while our process runs: same PID and start time, and not a zombie."""
        stat = _stat(self.pid)
        return stat is not None and stat[0] not in ("Z", "X") and stat[1] == self.start_ticks

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def spawn(name: str, argv: list[str], log_dir: Path) -> Process:
    """Start ``argv`` in its own session (so it outlives a detached `cluster up`), logging to log_dir/name.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    stat = _stat(child.pid)
    return Process(name, child.pid, stat[1] if stat else -1, argv, log)


def stop(process: Process, grace_s: float = 15.0) -> None:
    """SIGTERM the PID, then SIGKILL after ``grace_s``; reap it if it is our child."""
    if not process.alive():
        _reap(process.pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(process.pid)
        if not process.alive():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    time.sleep(0.2)
    _reap(process.pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def https_get(url: str, context: ssl.SSLContext, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def wait_until(process: Process, check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``check`` until it holds; fail fast if the process died. Returns the seconds waited."""
    start = time.monotonic()
    last_error = ""
    while time.monotonic() - start < timeout_s:
        if not process.alive():
            raise StartError(f"{process.name} exited while waiting for {what}; log {process.log}:\n"
                             f"{process.log_tail()}")
        try:
            if check():
                return time.monotonic() - start
        except (OSError, ValueError, json.JSONDecodeError) as err:
            last_error = f"{type(err).__name__}: {err}"
        time.sleep(0.25)
    raise StartError(f"{process.name}: {what} not reached within {timeout_s:.0f}s ({last_error}); "
                     f"log {process.log}:\n{process.log_tail()}")
