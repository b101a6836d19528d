"""Health as GitOps tools compute it: sigs.k8s.io/cli-utils' kstatus library itself (built from its Go module into
``kstatus-compute``) reads kubetune objects at each phase, from the status derivations, from `kubetune run`'s
records and from the operator on a real control plane, and says InProgress / Current / Failed."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kubetune.local.plan import load_objects
from kubetune.local.status import Cond, Tracker
from kubetune.local.workdir import WorkDir
from tests.builders import make_finetunejob, make_inferenceservice, make_modelexport
from tests.support.gotools import kstatus
from tests.support.operator import get_json, patch_status, phase_of, wait_for
from tests.unit.test_gitops_health import AT_REST, CURRENT, FAILED, IN_PROGRESS, PHASES

KSTATUS = {IN_PROGRESS: "InProgress", CURRENT: "Current", FAILED: "Failed",
           # Ready=False without Reconciling: kstatus reads it as not ready yet
           AT_REST: "InProgress"}
FTJ, MEXP, ISVC = "finetunejobs.kubetune.io", "modelexports.kubetune.io", "inferenceservices.kubetune.io"


def as_object(kind: str, status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": kind,
            "metadata": {"name": "x", "namespace": "team-a", "generation": generation}, "status": status}


KIND = {"ftj": "FineTuneJob", "mexp": "ModelExport", "isvc": "InferenceService"}


def test_kstatus_at_every_phase_of_the_status_derivations():
    cases = list(PHASES)
    got = kstatus([as_object(KIND[case.split("-")[0]], PHASES[case][0]) for case in cases])
    assert {case: g["status"] for case, g in zip(cases, got, strict=True)} == {
        case: KSTATUS[PHASES[case][2]] for case in cases}
    by_case = dict(zip(cases, got, strict=True))
    assert by_case["ftj-queued"]["message"] == PHASES["ftj-queued"][0]["message"]  # the queued words carry over
    assert by_case["ftj-failed"]["message"] == "3 pods failed"


def test_kstatus_sees_a_spec_change_the_operator_has_not_observed_yet():
    [got] = kstatus([as_object("InferenceService", PHASES["isvc-ready"][0], generation=2)])
    assert got["status"] == "InProgress" and "latest observed generation is 1" in got["message"]


def test_kstatus_on_local_run_records(tmp_path):
    """`kubetune run` records are objects in the CRD's shape: the same health at the same phases."""
    work = WorkDir(tmp_path / "work")
    file = tmp_path / "ftj.yaml"
    file.write_text(yaml.safe_dump(make_finetunejob("sft")))
    record, _ = work.admit(load_objects([file])[0])
    tracker = Tracker(work, record, say=lambda _: None)
    accepted = Cond("Accepted", True, "SpecValid", "spec is valid")
    seen = []
    for phase, reason, conds in [("Pending", "Pending", [accepted]),
                                 ("Running", "Running", [Cond("Running", True, "Running", "training")]),
                                 ("Succeeded", "Succeeded", [Cond("Succeeded", True, "Succeeded", "done")])]:
        tracker.set(phase, reason, f"{phase.lower()} locally", conds)
        seen.append(kstatus([work.load(record.key).to_json()])[0]["status"])
    assert seen == ["InProgress", "InProgress", "Current"]
    tracker.set("Failed", "Failed", "training crashed", [Cond("Failed", True, "Failed", "training crashed")])
    assert kstatus([work.load(record.key).to_json()])[0] == {
        "kind": "FineTuneJob", "name": "sft", "status": "Failed", "message": "training crashed"}


def in_ns(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "namespace": namespace}}


def health(cluster, resource: str, name: str, namespace: str) -> str:
    return kstatus([get_json(cluster, resource, name, namespace)])[0]["status"]


@pytest.mark.cluster
def test_kstatus_follows_the_operator_through_each_phase(cluster, operator, namespace):
    def walk(resource: str, name: str, phase: str) -> str:
        wait_for(lambda: phase_of(cluster, resource, name, namespace) == phase, what=f"{name} {phase}")
        return health(cluster, resource, name, namespace)

    job = {"model": {"uri": "hf://org/tiny"}, "datasets": [{"uri": "pvc://data/train.jsonl"}],
           "output": {"uri": "pvc://models/out/"}, "launcher": "job"}
    cluster.apply([in_ns(make_finetunejob("good", **job), namespace),
                   in_ns(make_finetunejob("bad", **{**job, "launcher": "pytorchjob"}), namespace),
                   in_ns(make_modelexport("merged", output={"uri": "pvc://models/exports/"},
                                          source={"fineTuneJobRef": {"name": "good"}}), namespace),
                   in_ns(make_inferenceservice("bot", model={"uri": "pvc://models/merged"}), namespace)])
    assert walk(MEXP, "merged", "WaitingForSource") == "InProgress"
    assert walk(FTJ, "good", "Pending") == "InProgress"
    patch_status(cluster, "jobs.batch", "good", namespace, {"active": 1, "startTime": "2026-01-01T00:00:00Z"})
    assert walk(FTJ, "good", "Running") == "InProgress"
    patch_status(cluster, "jobs.batch", "good", namespace, {
        "active": 0, "succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:10:00Z",
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
                       {"type": "Complete", "status": "True", "reason": "CompletionsReached"}]})
    assert walk(FTJ, "good", "Succeeded") == "Current"
    assert walk(MEXP, "merged", "Pending") == "InProgress"  # its source succeeded: the export Job starts

    wait_for(lambda: get_json(cluster, "pytorchjobs.kubeflow.org", "bad", namespace), what="PyTorchJob")
    patch_status(cluster, "pytorchjobs.kubeflow.org", "bad", namespace, {"conditions": [
        {"type": "Failed", "status": "True", "reason": "PyTorchJobFailed", "message": "pod exited with 1"}]})
    assert walk(FTJ, "bad", "Failed") == "Failed"

    assert walk(ISVC, "bot", "Deploying") == "InProgress"
    wait_for(lambda: get_json(cluster, "deployments.apps", "bot", namespace), what="Deployment")
    patch_status(cluster, "deployments.apps", "bot", namespace, {
        "observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]})
    assert walk(ISVC, "bot", "Ready") == "Current"
