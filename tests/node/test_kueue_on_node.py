"""Kueue on a real node: two quickstart FineTuneJobs share a ClusterQueue with room for one; the second waits,
"queued" in its status and with no pod, until the first has trained, then trains itself.

Kueue's controller and webhooks (v0.17.0, built from its Go module) run beside the node's control plane
(tests/support/kueue.py); everything else is the node's: the Job controller, kube-scheduler, the kubelet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import nodeflow as flow
from tests.support.kueue import cluster_queue, local_queue, resource_flavor, start_kueue
from tests.support.node import Node

pytestmark = [pytest.mark.node, pytest.mark.slow]

STEPS = 8
BATCH = 16
EACH = {"cpu": "600m", "memory": "1Gi"}  # the queue has 1 CPU: one job at a time


@pytest.fixture(scope="module")
def kueue_node(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    kueue = start_kueue(node, tmp_path_factory.mktemp("kueue-node"))
    try:
        yield node
    finally:
        kueue.stop()


def job(name: str, namespace: str, queue: str) -> dict:
    return flow.quickstart("finetunejob.yaml", metadata={"name": name, "namespace": namespace},
                           spec={"queueName": queue, "resources": {"nodes": 1, "requests": EACH},
                                 "training": {"maxSteps": STEPS, "perDeviceBatchSize": BATCH, "saveSteps": STEPS,
                                              "loggingSteps": 2},
                                 "lora": {"rank": 8, "alpha": 16}})


def pods(node: Node, namespace: str, name: str) -> list[dict]:
    return flow.items(node, "pods", namespace, f"kubetune.io/finetunejob={name}")


def test_two_queued_jobs_train_one_after_the_other(kueue_node: Node, node_namespace: str):
    node, ns = kueue_node, node_namespace
    pvc_root = flow.volumes(node, ns)
    flow.prepare_quickstart(pvc_root, train_size=STEPS * BATCH, heldout_size=4)
    node.apply([resource_flavor("default"), cluster_queue(ns, "default", {"cpu": "1", "memory": "4Gi"}),
                local_queue("train", ns, ns)])
    node.apply([job("one", ns, "train"), job("two", ns, "train")])

    def started_and_queued() -> tuple[str, str] | None:
        reasons = {n: flow.status_of(node, "finetunejobs", n, ns).get("reason") for n in ("one", "two")}
        queued = [n for n, r in reasons.items() if r == "Queued"]
        started = [n for n in reasons if n not in queued and pods(node, ns, n)]
        return (started[0], queued[0]) if len(started) == 1 and len(queued) == 1 else None

    first, second = flow.wait_for(started_and_queued, 300, "one job started, the other queued")
    waiting = flow.status_of(node, "finetunejobs", second, ns)
    assert waiting["phase"] == "Pending" and waiting["message"].startswith(f"queued: Job {second} waits in queue train")

    def job_finished(name: str) -> bool:
        conditions = ((flow.get(node, "jobs", name, ns) or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions)

    def first_done_second_held() -> bool:
        second_pods = pods(node, ns, second)  # looked at before the first job, so no admission can slip between
        assert not second_pods or job_finished(first), f"{second} got a pod while {first} held the quota"
        return flow.phase(node, "finetunejobs", first, ns) == "Succeeded"

    flow.wait_for(first_done_second_held, 900, f"{first} trained while {second} waited")
    flow.wait_phase(node, "finetunejobs", second, ns, "Succeeded", timeout_s=900)
    health = {c["type"]: c["status"] for c in flow.status_of(node, "finetunejobs", second, ns)["conditions"]}
    assert (health["Ready"], health["Reconciling"], health["Stalled"]) == ("True", "False", "False")
