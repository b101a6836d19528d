"""`python -m tests.support.cluster up|down|status`: a detached local control plane for people.

The plane lives in ``$KUBETUNE_CACHE/cluster`` (default ``~/.cache/kubetune/cluster``); ``up`` prints the
``export KUBECONFIG=...`` line to use and ``down`` stops the recorded PIDs.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from tests.support.cluster import start_cluster
from tests.support.controlplane import STATE_FILE, Plane


def state_dir() -> Path:
    cache = Path(os.environ.get("KUBETUNE_CACHE", Path.home() / ".cache" / "kubetune"))
    return cache / "cluster"


def _load(directory: Path) -> Plane | None:
    return Plane.load(directory) if (directory / STATE_FILE).exists() else None


def up(directory: Path) -> int:
    plane = _load(directory)
    if plane and plane.alive():
        print(f"control plane already running at {plane.server}")
    else:
        if plane:
            plane.stop()  # a half-dead plane from an earlier run: end what is left, then start clean
        shutil.rmtree(directory, ignore_errors=True)
        print(f"starting etcd, kube-apiserver, kube-controller-manager in {directory} ...", flush=True)
        plane = start_cluster(directory).plane
        timings = ", ".join(f"{k} {v:.1f}s" for k, v in plane.timings.items())
        print(f"control plane up at {plane.server} ({timings}); logs in {directory / 'logs'}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


def down(directory: Path) -> int:
    plane = _load(directory)
    if not plane or not plane.processes:
        print("no control plane recorded; nothing to stop")
        return 0
    pids = ", ".join(f"{p.name}={p.pid}" for p in plane.processes)
    plane.stop()
    print(f"stopped {pids}")
    return 0


def status(directory: Path) -> int:
    plane = _load(directory)
    if not plane or not plane.processes:
        print("not running")
        return 1
    for process in plane.processes:
        print(f"{process.name:<24} pid {process.pid:<8} {'running' if process.alive() else 'exited'}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0 if plane.alive() else 1


COMMANDS = {"up": up, "down": down, "status": status}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--state-dir", type=Path, default=None, help="where the plane lives (default: %(default)s)")
    args = parser.parse_args(argv)
    return COMMANDS[args.command]((args.state_dir or state_dir()).resolve())
