"""Kueue queueing, against Kueue's own controller (built from its Go module) on a control plane of its own.

A FineTuneJob with ``queueName`` renders a Job labelled for Kueue; Kueue's webhook creates it suspended and its
controller admits it when the ClusterQueue has quota. The FineTuneJob says "queued" until then, and two jobs that
do not fit together run one after the other. The test plays only the kubelet's part (a Job finishing).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.builders import make_finetunejob
from tests.support.cluster import Cluster, start_cluster
from tests.support.kueue import cluster_queue, local_queue, resource_flavor, start_kueue
from tests.support.operator import get_json, install_manifests, list_json, patch_status, start_operator, wait_for

pytestmark = pytest.mark.cluster

FTJ, JOB, WORKLOADS = "finetunejobs.kubetune.io", "jobs.batch", "workloads.kueue.x-k8s.io"


@pytest.fixture(scope="module")
def kueue_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Its own control plane: Kueue's webhooks and controller act on every Job, so they stay out of other tests."""
    cluster = start_cluster(tmp_path_factory.mktemp("kueue-plane"))
    stack: list[Any] = []
    try:
        install_manifests(cluster)
        stack.append(start_kueue(cluster, tmp_path_factory.mktemp("kueue")))
        stack.append(start_operator(cluster))
        yield cluster
    finally:
        for part in reversed(stack):
            part.stop()
        cluster.stop()


def queued_job(name: str, namespace: str, queue: str, cpu: str) -> dict[str, Any]:
    body = make_finetunejob(name, model={"uri": "hf://org/tiny"}, datasets=[{"uri": "pvc://data/train.jsonl"}],
                            output={"uri": "pvc://models/out/"}, launcher="job", queueName=queue,
                            resources={"nodes": 1, "requests": {"cpu": cpu, "memory": "1Gi"}})
    return {**body, "metadata": {**body["metadata"], "namespace": namespace}}


def queues(cluster: Cluster, namespace: str, name: str, cpu: str) -> None:
    cluster.apply([resource_flavor("default"), cluster_queue(name, "default", {"cpu": cpu, "memory": "16Gi"}),
                   local_queue(name, namespace, name)])


def status(cluster: Cluster, name: str, namespace: str) -> dict[str, Any]:
    return (get_json(cluster, FTJ, name, namespace) or {}).get("status") or {}


def suspended(cluster: Cluster, name: str, namespace: str) -> bool | None:
    job = get_json(cluster, JOB, name, namespace)
    return None if job is None else bool(job["spec"].get("suspend"))


def workload_waits_for_quota(cluster: Cluster, job_name: str, namespace: str) -> str | None:
    """The message of the job's Workload once Kueue has tried to admit it and found no quota."""
    for wl in list_json(cluster, WORKLOADS, namespace):
        if any(ref["name"] == job_name for ref in wl["metadata"].get("ownerReferences") or []):
            for cond in (wl.get("status") or {}).get("conditions") or []:
                if cond["type"] == "QuotaReserved" and cond["status"] == "False" and "quota" in cond["message"]:
                    return str(cond["message"])
    return None


def finish(cluster: Cluster, name: str, namespace: str) -> None:
    """What the Job controller reports once the pod succeeded (this plane runs no kubelet)."""
    patch_status(cluster, JOB, name, namespace, {
        "active": 0, "succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:10:00Z",
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
                       {"type": "Complete", "status": "True", "reason": "CompletionsReached"}]})


def test_queued_job_stays_suspended_until_its_cluster_queue_admits_it(kueue_cluster):
    cluster, namespace = kueue_cluster, kueue_cluster.create_namespace("team-wait")
    queues(cluster, namespace, "small", cpu="1")  # the job asks for 2 CPUs: it does not fit
    cluster.apply(queued_job("big", namespace, "small", cpu="2"))

    wait_for(lambda: workload_waits_for_quota(cluster, "big", namespace), timeout_s=120, what="Workload pending")
    assert suspended(cluster, "big", namespace) is True  # created suspended by Kueue's webhook
    queued = wait_for(lambda: (s := status(cluster, "big", namespace)).get("reason") == "Queued" and s,
                      what="FineTuneJob queued")
    assert queued["phase"] == "Pending"
    assert queued["message"].startswith("queued: Job big waits in queue small until there is room in its quota")
    conditions = {c["type"]: c for c in queued["conditions"]}
    assert (conditions["Reconciling"]["status"], conditions["Reconciling"]["reason"]) == ("True", "Queued")
    wide = cluster.kubectl("get", FTJ, "big", "-n", namespace, "-o", "wide").stdout.split("\n")[1].split()
    assert "Pending" in wide and "Queued" in wide  # the Phase and Reason columns

    cluster.apply(cluster_queue("small", "default", {"cpu": "4", "memory": "16Gi"}))  # room now
    wait_for(lambda: suspended(cluster, "big", namespace) is False, timeout_s=120, what="Kueue admits the Job")
    admitted = wait_for(lambda: (s := status(cluster, "big", namespace)).get("reason") not in (None, "Queued") and s,
                        what="FineTuneJob no longer queued")
    assert admitted["phase"] == "Pending" and admitted["reason"] == "Created"


def test_two_jobs_over_quota_run_one_after_the_other(kueue_cluster):
    cluster, namespace = kueue_cluster, kueue_cluster.create_namespace("team-share")
    queues(cluster, namespace, "shared", cpu="3")  # room for one 2-CPU job at a time
    cluster.apply([queued_job(name, namespace, "shared", cpu="2") for name in ("first", "second")])

    def one_admitted() -> tuple[str, str] | None:
        states = {n: suspended(cluster, n, namespace) for n in ("first", "second")}
        running = [n for n, s in states.items() if s is False]
        waiting = [n for n, s in states.items() if s is True]
        if len(running) == 1 and len(waiting) == 1 and workload_waits_for_quota(cluster, waiting[0], namespace):
            return running[0], waiting[0]
        return None

    admitted, waiting = wait_for(one_admitted, timeout_s=120, what="one job admitted, the other waiting")
    wait_for(lambda: status(cluster, waiting, namespace).get("reason") == "Queued", what="second job queued")
    wait_for(lambda: status(cluster, admitted, namespace).get("reason") == "Created", what="first job started")

    finish(cluster, admitted, namespace)
    wait_for(lambda: status(cluster, admitted, namespace).get("phase") == "Succeeded", what="first job succeeded")
    wait_for(lambda: suspended(cluster, waiting, namespace) is False, timeout_s=120, what="second job admitted")
    wait_for(lambda: status(cluster, waiting, namespace).get("reason") == "Created", what="second job started")
    assert suspended(cluster, admitted, namespace) is False and status(cluster, admitted, namespace)["phase"] == \
        "Succeeded"
