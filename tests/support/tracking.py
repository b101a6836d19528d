"""A real MLflow tracking server for tests (PyPI ``mlflow``), sqlite metadata and local artifacts under a folder."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import Process, free_port, spawn, stop, wait_until


@dataclass(frozen=True)
class TrackingServer:
    url: str
    process: Process


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
        return resp.status == 200


@contextmanager
def start_tracking_server(root: Path) -> Iterator[TrackingServer]:
    """``mlflow server`` on a free loopback port; stopped (by PID) when the block ends."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    if not mlflow:
        raise RuntimeError("mlflow not found: install the dev extra with `make venv`")
    port = free_port()
    argv = [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts")]
    process = spawn("mlflow", argv, root / "logs")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(process, lambda: _healthy(url), 180, "the MLflow tracking server")
        yield TrackingServer(url, process)
    finally:
        stop(process)
