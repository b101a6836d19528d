"""Specs the CRD accepts but that cannot run end as Accepted=False with a reason and a message naming the field,
and launch nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import make_finetunejob, make_inferenceservice
from tests.support.operator import get_json, list_json, patch_status, phase_of, wait_for

pytestmark = pytest.mark.cluster

FTJ, ISVC, PTJ = "finetunejobs.kubetune.io", "inferenceservices.kubetune.io", "pytorchjobs.kubeflow.org"


def in_ns(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "namespace": namespace}}


def accepted(cluster, resource: str, name: str, namespace: str) -> dict[str, Any] | None:
    obj = get_json(cluster, resource, name, namespace)
    conds = {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}
    return conds.get("Accepted")


def no_children(cluster, namespace: str, label: str) -> bool:
    return all(not list_json(cluster, r, namespace, label)
               for r in ("configmaps", PTJ, "jobs.batch", "services", "deployments.apps"))


FINETUNEJOB_CASES = [
    ({"extraArgs": {"neftune_noise_alpah": 5}}, "InvalidExtraArgs", "spec.extraArgs.neftune_noise_alpah"),
    ({"extraArgs": {"learning_rate": 0.1}}, "InvalidExtraArgs", "already set by the spec"),
    ({"model": {"uri": "hf://org/tiny", "credentialsSecretRef": {"name": "hf"}},
      "env": [{"name": "HF_TOKEN", "value": "x"}]}, "EnvNotAllowed", "spec.env[0]: HF_TOKEN is set by kubetune"),
    ({"model": {"uri": "hf://org/tiny", "template": "qwenn"}}, "UnknownTemplate", "unknown template 'qwenn'"),
    ({"stage": "rm", "datasets": [{"uri": "pvc://d/p.jsonl", "ranking": True}],
      "training": {"trainOnPrompt": True}}, "InvalidSpec", "train_on_prompt"),
]


@pytest.mark.parametrize(("spec", "reason", "mentions"), FINETUNEJOB_CASES,
                         ids=["unknown-extra-arg", "extra-arg-clash", "env-it-sets", "unknown-template", "stage-rule"])
def test_invalid_finetunejob_is_not_accepted(cluster, operator, namespace, spec, reason, mentions):
    cluster.apply(in_ns(make_finetunejob("bad", output={"uri": "pvc://models/out/"}, **spec), namespace))
    cond = wait_for(lambda: accepted(cluster, FTJ, "bad", namespace), what="Accepted condition")
    assert (cond["status"], cond["reason"]) == ("False", reason)
    assert mentions in cond["message"]
    ftj = get_json(cluster, FTJ, "bad", namespace)
    assert ftj["status"]["phase"] == "Failed" and ftj["status"]["reason"] == reason
    assert no_children(cluster, namespace, "kubetune.io/finetunejob=bad")
    events = [e for e in list_json(cluster, "events", namespace) if e["involvedObject"]["name"] == "bad"]
    assert any(e["type"] == "Warning" and e["reason"] == reason for e in events)


def succeed(cluster, namespace: str, name: str, **spec: Any) -> None:
    cluster.apply(in_ns(make_finetunejob(name, output={"uri": "pvc://models/out/"}, **spec), namespace))
    wait_for(lambda: get_json(cluster, PTJ, name, namespace), what=f"PyTorchJob {name}")
    patch_status(cluster, PTJ, name, namespace, {"conditions": [
        {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"}]})
    wait_for(lambda: phase_of(cluster, FTJ, name, namespace) == "Succeeded", what=f"{name} Succeeded")


def test_adapter_for_another_base_and_full_model_adapter_are_rejected(cluster, operator, namespace):
    succeed(cluster, namespace, "on-qwen", model={"uri": "hf://org/qwen"})
    succeed(cluster, namespace, "full", model={"uri": "hf://org/llama"}, method="full")
    cluster.apply(in_ns(make_inferenceservice("mismatch", model={"uri": "hf://org/llama"},
                                              adapters=[{"name": "a", "fineTuneJobRef": {"name": "on-qwen"}}]),
                        namespace))
    cluster.apply(in_ns(make_inferenceservice("not-adapter", model={"uri": "hf://org/llama"},
                                              adapters=[{"name": "a", "fineTuneJobRef": {"name": "full"}}]),
                        namespace))
    for name, reason, mentions in (("mismatch", "AdapterBaseMismatch", "hf://org/qwen"),
                                   ("not-adapter", "WrongArtifactType", "full-model")):
        cond = wait_for(lambda name=name: accepted(cluster, ISVC, name, namespace), what=f"{name} Accepted")
        assert (cond["status"], cond["reason"]) == ("False", reason) and mentions in cond["message"]
        assert no_children(cluster, namespace, f"kubetune.io/inferenceservice={name}")

    # InferenceService is mutable: fixing the spec makes it acceptable and deploys it
    cluster.kubectl("patch", ISVC, "mismatch", "-n", namespace, "--type=merge", "-p",
                    '{"spec":{"model":{"uri":"hf://org/qwen"}}}')
    wait_for(lambda: get_json(cluster, "deployments.apps", "mismatch", namespace), what="Deployment after fix")
    assert accepted(cluster, ISVC, "mismatch", namespace)["status"] == "True"
