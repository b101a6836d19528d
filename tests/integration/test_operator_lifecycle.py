"""Operator restarts and deletion: no duplicate children after a restart mid-flight; deleting a FineTuneJob
garbage-collects its children (kube-controller-manager) but never a serving endpoint that referenced it."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

import pytest

from tests.builders import make_finetunejob, make_inferenceservice
from tests.support.operator import get_json, list_json, patch_status, phase_of, start_operator, wait_for

pytestmark = pytest.mark.cluster

FTJ, ISVC, PTJ = "finetunejobs.kubetune.io", "inferenceservices.kubetune.io", "pytorchjobs.kubeflow.org"
LABEL = "kubetune.io/finetunejob"


def in_ns(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "namespace": namespace}}


def children(cluster, namespace: str, name: str) -> dict[str, list[str]]:
    found = {}
    for resource in ("configmaps", PTJ, "jobs.batch", "services"):
        items = list_json(cluster, resource, namespace, f"{LABEL}={name}")
        found[resource] = sorted(i["metadata"]["name"] for i in items)
    return found


def test_restart_mid_flight_creates_no_duplicates(cluster, operator, namespace):
    cluster.apply(in_ns(make_finetunejob("a", output={"uri": "pvc://models/out/"}), namespace))
    ptj = wait_for(lambda: get_json(cluster, PTJ, "a", namespace), what="PyTorchJob")
    patch_status(cluster, PTJ, "a", namespace, {"conditions": [
        {"type": "Running", "status": "True", "reason": "PyTorchJobRunning"}]})
    wait_for(lambda: phase_of(cluster, FTJ, "a", namespace) == "Running", what="Running")
    before = children(cluster, namespace, "a")
    status_before = get_json(cluster, FTJ, "a", namespace)["status"]

    operator.stop()
    cluster.apply(in_ns(make_finetunejob("b", output={"uri": "pvc://models/out/"}), namespace))  # while down
    operator.start()
    wait_for(lambda: get_json(cluster, PTJ, "b", namespace), what="PyTorchJob of b after restart")

    assert children(cluster, namespace, "a") == before == {
        "configmaps": ["a-train-config"], PTJ: ["a"], "jobs.batch": [], "services": []}
    after = get_json(cluster, PTJ, "a", namespace)
    assert after["metadata"]["uid"] == ptj["metadata"]["uid"]  # the same object, not re-created
    status_after = get_json(cluster, FTJ, "a", namespace)["status"]
    assert status_after["conditions"] == status_before["conditions"]  # lastTransitionTime kept
    assert status_after["restarts"] == 0


def test_deleting_a_finetunejob_collects_children_but_keeps_serving(cluster, operator, namespace):
    cluster.apply(in_ns(make_finetunejob("gone", model={"uri": "hf://org/base"},
                                         output={"uri": "pvc://models/out/"}), namespace))
    wait_for(lambda: get_json(cluster, PTJ, "gone", namespace), what="PyTorchJob")
    patch_status(cluster, PTJ, "gone", namespace, {"conditions": [
        {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"}]})
    wait_for(lambda: phase_of(cluster, FTJ, "gone", namespace) == "Succeeded", what="Succeeded")
    serving = make_inferenceservice("svc", model={"uri": None, "fineTuneJobRef": {"name": "gone"}})
    cluster.apply(in_ns(serving, namespace))
    deployment = wait_for(lambda: get_json(cluster, "deployments.apps", "svc", namespace), what="Deployment")
    serve = get_json(cluster, "configmap", "svc-serve-config", namespace)["data"]["serve.yaml"]
    assert "default_adapter" in serve
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"

    cluster.kubectl("delete", FTJ, "gone", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for(lambda: children(cluster, namespace, "gone") == {
        "configmaps": [], PTJ: [], "jobs.batch": [], "services": []}, what="garbage collection")
    assert get_json(cluster, ISVC, "svc", namespace) is not None
    assert get_json(cluster, "deployments.apps", "svc", namespace)["metadata"]["uid"] == deployment["metadata"]["uid"]
    assert get_json(cluster, "services", "svc", namespace) is not None


def test_liveness_endpoint_reports_the_operator_alive(operator_installed):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/healthz"
    running = start_operator(operator_installed, liveness=url)
    try:
        body = wait_for(lambda: _get(url), what="liveness endpoint")
        assert "reconciles" in json.loads(body)
    finally:
        running.stop()


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode() if response.status == 200 else None
    except OSError:
        return None
