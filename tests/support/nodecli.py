"""`python -m tests.support.nodecli up|down|status`: the one-node cluster for people (``make node-up``).

The node lives in ``$KUBETUNE_CACHE/node/state`` (default ``~/.cache/kubetune/node/state``) with the kubetune
operator deployed; ``up`` prints the ``export KUBECONFIG=...`` line and ``down`` deletes the pods and stops the
recorded PIDs. Root only: the kubelet, containerd and kube-proxy manage mounts, cgroups and iptables.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tests.support.node import cache_dir, load_node, start_node, teardown


def state_dir() -> Path:
    return cache_dir() / "node" / "state"


def up(directory: Path) -> int:
    node = load_node(directory)
    if node and node.plane.alive():
        print(f"node cluster already running at {node.server}")
    else:
        if node:
            teardown(node)  # a half-dead node from an earlier run: end what is left, then start clean
        shutil.rmtree(directory, ignore_errors=True)
        print(f"building what is missing and starting the node cluster in {directory} ...", flush=True)
        node = start_node(directory)
        timings = ", ".join(f"{k} {v:.1f}s" for k, v in node.plane.timings.items())
        print(f"node cluster up at {node.server} ({timings}); logs in {directory / 'logs'}")
        print("local PersistentVolumes: StorageClass `local`; "
              "python -m tests.support.nodecli volume NAME creates one (host directory printed)")
    print(f"export KUBECONFIG={node.kubeconfig}")
    return 0


def down(directory: Path) -> int:
    node = load_node(directory)
    if not node or not node.plane.processes:
        print("no node cluster recorded; nothing to stop")
        return 0
    pids = ", ".join(f"{p.name}={p.pid}" for p in node.plane.processes)
    teardown(node)
    print(f"stopped {pids}")
    return 0


def status(directory: Path) -> int:
    node = load_node(directory)
    if not node or not node.plane.processes:
        print("not running")
        return 1
    for process in node.plane.processes:
        print(f"{process.name:<24} pid {process.pid:<8} {'running' if process.alive() else 'exited'}")
    print(f"export KUBECONFIG={node.kubeconfig}")
    return 0 if node.plane.alive() else 1


def volume(directory: Path, name: str) -> int:
    node = load_node(directory)
    if not node or not node.plane.alive():
        print("node cluster not running: make node-up", file=sys.stderr)
        return 1
    print(node.local_volume(name))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.nodecli", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "volume"))
    parser.add_argument("name", nargs="?", help="volume: the PersistentVolume's name")
    parser.add_argument("--state-dir", type=Path, default=None, help="where the node lives")
    args = parser.parse_args(argv)
    directory = (args.state_dir or state_dir()).resolve()
    if args.command == "volume":
        if not args.name:
            parser.error("volume needs a NAME")
        return volume(directory, args.name)
    return {"up": up, "down": down, "status": status}[args.command](directory)


if __name__ == "__main__":
    raise SystemExit(main())
