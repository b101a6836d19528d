"""Chaining on a real apiserver: a ModelExport created before its FineTuneJob finished waits, then starts by
itself when the FineTuneJob succeeds (kopf has no cross-resource trigger: the operator's index + phase handler)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.builders import make_finetunejob, make_modelexport
from tests.support.operator import get_json, patch_status, phase_of, wait_for

pytestmark = pytest.mark.cluster

FTJ, MEXP, PTJ, JOB = "finetunejobs.kubetune.io", "modelexports.kubetune.io", "pytorchjobs.kubeflow.org", "jobs.batch"


def in_ns(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "namespace": namespace}}


def finish(cluster, name: str, namespace: str, state: str) -> None:
    wait_for(lambda: get_json(cluster, PTJ, name, namespace), what=f"PyTorchJob {name}")
    patch_status(cluster, PTJ, name, namespace, {"conditions": [
        {"type": state, "status": "True", "reason": f"PyTorchJob{state}", "message": f"training {state.lower()}"}]})


def condition(obj: dict[str, Any], ctype: str) -> tuple[str, str] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:  # the operator may not have written it yet
        if cond["type"] == ctype:
            return cond["status"], cond["reason"]
    return None


def test_export_waits_for_its_finetunejob_then_starts(cluster, operator, namespace):
    cluster.apply(in_ns(make_finetunejob("sft", model={"uri": "hf://org/base"},
                                         output={"uri": "pvc://models/out/"}), namespace))
    cluster.apply(in_ns(make_modelexport("merged", source={"fineTuneJobRef": {"name": "sft"}},
                                         output={"uri": "pvc://models/exports/"}), namespace))
    wait_for(lambda: phase_of(cluster, MEXP, "merged", namespace) == "WaitingForSource", what="waiting")
    mexp = get_json(cluster, MEXP, "merged", namespace)
    assert condition(mexp, "SourceReady") == ("False", "WaitingForSource")
    assert get_json(cluster, JOB, "merged-export", namespace) is None

    finish(cluster, "sft", namespace, "Succeeded")
    job = wait_for(lambda: get_json(cluster, JOB, "merged-export", namespace), what="export Job")
    ftj = get_json(cluster, FTJ, "sft", namespace)
    adapter = ftj["status"]["output"]["uri"]
    mexp = wait_for(lambda: (m := get_json(cluster, MEXP, "merged", namespace))["status"].get("resolvedSource")
                    and m, what="resolvedSource")
    assert mexp["status"]["resolvedSource"] == {"fineTuneJob": "sft", "uri": adapter, "baseModelUri": "hf://org/base"}
    assert condition(mexp, "SourceReady") == ("True", "Resolved")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "kubetune", "export", "/etc/kubetune/export.yaml"]
    doc = yaml.safe_load(get_json(cluster, "configmap", "merged-export-config", namespace)["data"]["export.yaml"])
    assert doc["spec"]["source"] == {"model": {"uri": "hf://org/base"}, "adapter": {"uri": adapter}}

    patch_status(cluster, JOB, "merged-export", namespace, {"active": 1, "startTime": "2026-01-01T00:00:00Z"})
    wait_for(lambda: phase_of(cluster, MEXP, "merged", namespace) == "Running", what="export Running")
    patch_status(cluster, JOB, "merged-export", namespace, {
        "active": 0, "succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:10:00Z",
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
                       {"type": "Complete", "status": "True", "reason": "CompletionsReached"}]})
    wait_for(lambda: phase_of(cluster, MEXP, "merged", namespace) == "Succeeded", what="export Succeeded")
    output = get_json(cluster, MEXP, "merged", namespace)["status"]["output"]
    uid8 = mexp["metadata"]["uid"][:8]
    assert output == {"uri": f"pvc://models/exports/merged-{uid8}/", "artifactType": "full-model",
                      "baseModel": {"uri": "hf://org/base"}}


def test_export_of_a_failed_finetunejob_fails_with_source_failed(cluster, operator, namespace):
    cluster.apply(in_ns(make_finetunejob("doomed", output={"uri": "pvc://models/out/"}), namespace))
    cluster.apply(in_ns(make_modelexport("never", source={"fineTuneJobRef": {"name": "doomed"}}), namespace))
    wait_for(lambda: phase_of(cluster, MEXP, "never", namespace) == "WaitingForSource", what="waiting")
    finish(cluster, "doomed", namespace, "Failed")
    wait_for(lambda: phase_of(cluster, MEXP, "never", namespace) == "Failed", what="SourceFailed")
    mexp = get_json(cluster, MEXP, "never", namespace)
    assert condition(mexp, "SourceReady") == ("False", "SourceFailed")
    assert "doomed" in mexp["status"]["message"]
    assert get_json(cluster, JOB, "never-export", namespace) is None


def test_export_created_after_success_and_reference_created_later(cluster, operator, namespace):
    """Order does not matter: a reference to a not-yet-existing object waits for it to appear."""
    cluster.apply(in_ns(make_modelexport("early", source={"fineTuneJobRef": {"name": "late"}}), namespace))
    wait_for(lambda: (m := get_json(cluster, MEXP, "early", namespace)) and condition(m, "SourceReady")
             == ("False", "SourceNotFound"), what="SourceNotFound")
    cluster.apply(in_ns(make_finetunejob("late", output={"uri": "pvc://models/out/"}), namespace))
    finish(cluster, "late", namespace, "Succeeded")
    wait_for(lambda: get_json(cluster, JOB, "early-export", namespace), what="export Job")
