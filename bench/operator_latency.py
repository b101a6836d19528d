"""Operator reconcile latency on the local control plane (kube-apiserver + etcd from hack/build-controlplane.sh).

    python bench/operator_latency.py [--jobs 20]

Starts the plane and the operator (in-process, as its ServiceAccount), then for each of N FineTuneJobs measures
  create -> PyTorchJob exists            (first reconcile: parse, resolve, render, two server-side applies)
  PyTorchJob Running -> FineTuneJob Running (child event -> parent status patch)
polling the API directly every 10 ms. Prints p50 / p95 / max in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.builders import make_finetunejob
from tests.support.cluster import start_cluster
from tests.support.operator import install_manifests, start_operator

from kubetune_operator.kinds import FINETUNEJOB, PYTORCHJOB
from kubetune_operator.kube import Kube


def until(probe, timeout_s: float = 60.0) -> float:
    began = time.monotonic()
    while not probe():
        if time.monotonic() - began > timeout_s:
            raise TimeoutError
        time.sleep(0.01)
    return (time.monotonic() - began) * 1000


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{name:<42} p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="kubetune-bench-")))
    try:
        install_manifests(cluster)
        operator = start_operator(cluster)
        kube = Kube.connect(str(cluster.kubeconfig))
        ns = cluster.create_namespace("bench")
        first, mirror = [], []
        for i in range(args.jobs):
            name = f"job-{i}"
            body = make_finetunejob(name, output={"uri": "pvc://models/out/"})
            body["metadata"]["namespace"] = ns
            began = time.monotonic()
            kube.request("POST", FINETUNEJOB.path(ns), body=body)
            until(lambda name=name: kube.get(PYTORCHJOB, ns, name) is not None)
            first.append((time.monotonic() - began) * 1000)
            kube.patch_status(PYTORCHJOB, ns, name, {"conditions": [
                {"type": "Running", "status": "True", "reason": "PyTorchJobRunning"}]})
            mirror.append(until(lambda name=name: ((kube.get(FINETUNEJOB, ns, name) or {}).get("status") or {})
                                .get("phase") == "Running"))
        print(summary("create FineTuneJob -> PyTorchJob exists", first))
        print(summary("PyTorchJob Running -> FineTuneJob Running", mirror))
        operator.stop()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
