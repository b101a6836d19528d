"""FineTuneJob on a real apiserver: the example becomes a PyTorchJob the upstream schema keeps whole, and the
FineTuneJob follows it (played by the test) to Running and Succeeded with conditions, Events and columns."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.finetunejob import FineTuneJob
from kubetune_operator.reconcile.finetunejob import read_uris, runtime_config
from kubetune_operator.render.training import TrainInputs, render_training
from kubetune_operator.resolve import Artifact
from kubetune_operator.settings import RenderSettings
from tests.support.operator import condition_of, field_of, get_json, list_json, patch_status, phase_of, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
FTJ = "finetunejobs.kubetune.io"
PTJ = "pytorchjobs.kubeflow.org"


def example(namespace: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples/cluster/finetunejob-sft-lora.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    return doc


def assert_kept(rendered: Any, stored: Any, path: str = "") -> None:
    """Every rendered field survives in the stored object: the upstream schema pruned nothing."""
    if isinstance(rendered, dict):
        assert isinstance(stored, dict), path
        for key, value in rendered.items():
            assert key in stored, f"{path}.{key} was pruned by the PyTorchJob schema"
            assert_kept(value, stored[key], f"{path}.{key}")
    elif isinstance(rendered, list):
        assert isinstance(stored, list) and len(stored) == len(rendered), path
        for i, (a, b) in enumerate(zip(rendered, stored, strict=True)):
            assert_kept(a, b, f"{path}[{i}]")
    else:
        assert str(rendered) == str(stored), f"{path}: {rendered!r} != {stored!r}"


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj["status"]["conditions"]}


def test_example_runs_through_pytorchjob_to_succeeded(cluster, operator, namespace):
    cluster.apply(example(namespace))
    ptj = wait_for(lambda: get_json(cluster, PTJ, "support-sft", namespace), what="PyTorchJob")
    ftj = get_json(cluster, FTJ, "support-sft", namespace)
    assert ftj is not None

    # the expected spec, and nothing of it pruned by the upstream CRD's structural schema
    job = FineTuneJob.model_validate(ftj)
    out = f"pvc://models/team-a/support-sft-{ftj['metadata']['uid'][:8]}/"
    settings = RenderSettings(runtime_image="kubetune-runtime:test", vllm_image="vllm:test")
    rendered = render_training(ftj, job, TrainInputs(out, read_uris(job, [Artifact(job.spec.model.uri or "")])),
                               runtime_config(job, out, {}), settings)[1]
    assert_kept(rendered["spec"], ptj["spec"])
    spec = ptj["spec"]
    assert spec["nprocPerNode"] == "8"
    assert spec["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    master = spec["pytorchReplicaSpecs"]["Master"]["template"]
    container = master["spec"]["containers"][0]
    assert container["name"] == "pytorch" and container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert ptj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpu"
    assert ptj["metadata"]["ownerReferences"][0]["uid"] == ftj["metadata"]["uid"]
    config_map = get_json(cluster, "configmap", "support-sft-train-config", namespace)
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["output_dir"] == f"/mnt/pvc/models/team-a/support-sft-{ftj['metadata']['uid'][:8]}"
    assert config["neftune_noise_alpha"] == 5 and config["deepspeed"] == "ds_z3"

    # play the training-operator: Running, then Succeeded
    created = {"type": "Created", "status": "True", "reason": "PyTorchJobCreated"}
    began = time.monotonic()
    patch_status(cluster, PTJ, "support-sft", namespace, {"conditions": [
        created, {"type": "Running", "status": "True", "reason": "PyTorchJobRunning"}],
        "startTime": "2026-01-01T00:00:00Z"})
    wait_for(lambda: phase_of(cluster, FTJ, "support-sft", namespace) == "Running", what="Running")
    running_latency = time.monotonic() - began
    patch_status(cluster, PTJ, "support-sft", namespace, {"conditions": [
        created, {"type": "Running", "status": "False", "reason": "PyTorchJobRunning"},
        {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded", "message": "done"}],
        "completionTime": "2026-01-01T01:00:00Z"})
    wait_for(lambda: phase_of(cluster, FTJ, "support-sft", namespace) == "Succeeded", what="Succeeded")

    ftj = get_json(cluster, FTJ, "support-sft", namespace)
    status = ftj["status"]
    assert status["observedGeneration"] == ftj["metadata"]["generation"]
    assert conditions(ftj) == {"Accepted": ("True", "SpecValid"), "InputsReady": ("True", "Resolved"),
                               "Running": ("False", "Succeeded"), "Succeeded": ("True", "Succeeded"),
                               "Ready": ("True", "Succeeded"), "Reconciling": ("False", "Succeeded"),
                               "Stalled": ("False", "Succeeded")}
    assert status["output"] == {"uri": out, "artifactType": "lora-adapter",
                                "baseModel": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct", "revision": "main"}}
    assert (status["startTime"], status["completionTime"]) == ("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")

    events = list_json(cluster, "events", namespace)
    reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == "support-sft"
               and e["involvedObject"]["kind"] == "FineTuneJob"]
    assert {"Running", "Succeeded"} <= set(reasons), reasons

    table = cluster.kubectl("get", "finetunejobs", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "STAGE", "METHOD", "MODEL", "PHASE", "PROGRESS", "LOSS", "SCORE", "AGE"]
    assert table[1].split()[:5] == ["support-sft", "sft", "lora", "hf://Qwen/Qwen2.5-7B-Instruct", "Succeeded"]
    wide = cluster.kubectl("get", "finetunejobs", "-n", namespace, "-o", "wide").stdout
    assert out in wide
    print(f"\nreconcile latency (PyTorchJob Running -> FineTuneJob Running): {running_latency:.2f}s")


def test_restarts_failure_and_suspend(cluster, operator, namespace):
    body = yaml.safe_load(json.dumps({
        "apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "flaky", "namespace": namespace},
        "spec": {"model": {"uri": "hf://org/tiny"}, "datasets": [{"uri": "pvc://data/train.jsonl"}],
                 "output": {"uri": "pvc://models/out/"}},
    }))
    cluster.apply(body)
    wait_for(lambda: get_json(cluster, PTJ, "flaky", namespace), what="PyTorchJob")

    cluster.kubectl("patch", FTJ, "flaky", "-n", namespace, "--type=merge", "-p",
                    '{"spec":{"runPolicy":{"suspend":true}}}')
    wait_for(lambda: phase_of(cluster, FTJ, "flaky", namespace) == "Suspended", what="Suspended")
    assert get_json(cluster, PTJ, "flaky", namespace)["spec"]["runPolicy"]["suspend"] is True
    denied = cluster.kubectl("patch", FTJ, "flaky", "-n", namespace, "--type=merge", "-p",
                             '{"spec":{"stage":"pt"}}', check=False)
    assert denied.returncode != 0 and "immutable" in denied.stderr
    cluster.kubectl("patch", FTJ, "flaky", "-n", namespace, "--type=merge", "-p",
                    '{"spec":{"runPolicy":{"suspend":false}}}')
    wait_for(lambda: field_of(cluster, PTJ, "flaky", namespace, "spec", "runPolicy", "suspend") is False,
             what="resumed PyTorchJob")

    for state in ("Running", "Restarting", "Running", "Restarting"):
        patch_status(cluster, PTJ, "flaky", namespace, {"conditions": [
            {"type": state, "status": "True", "reason": f"PyTorchJob{state}"}]})
        wait_for(lambda state=state: (c := condition_of(get_json(cluster, FTJ, "flaky", namespace), "Running"))
                 is not None and (c.get("status"), c.get("reason")) == ("True", state), what=state)
    assert get_json(cluster, FTJ, "flaky", namespace)["status"]["restarts"] == 2
    patch_status(cluster, PTJ, "flaky", namespace, {"conditions": [
        {"type": "Failed", "status": "True", "reason": "PyTorchJobFailed", "message": "pod exited with 1"}]})
    wait_for(lambda: phase_of(cluster, FTJ, "flaky", namespace) == "Failed", what="Failed")
    ftj = get_json(cluster, FTJ, "flaky", namespace)
    assert conditions(ftj)["Failed"] == ("True", "Failed") and "exited with 1" in ftj["status"]["message"]
    warnings = [e for e in list_json(cluster, "events", namespace) if e["type"] == "Warning"
                and e["involvedObject"]["name"] == "flaky"]
    assert {"Restarting", "Failed"} <= {e["reason"] for e in warnings}


def test_indexed_job_launcher(cluster, operator, namespace):
    cluster.apply({"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
                   "metadata": {"name": "plain", "namespace": namespace},
                   "spec": {"model": {"uri": "hf://org/tiny"}, "datasets": [{"uri": "pvc://data/train.jsonl"}],
                            "output": {"uri": "pvc://models/out/"}, "launcher": "job",
                            "resources": {"nodes": 2}}})
    job = wait_for(lambda: get_json(cluster, "jobs.batch", "plain", namespace), what="Job")
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    svc = get_json(cluster, "service", "plain-nodes", namespace)
    assert svc["spec"]["clusterIP"] == "None"
    patch_status(cluster, "jobs.batch", "plain", namespace, {"active": 2, "failed": 1,
                                                             "startTime": "2026-01-01T00:00:00Z"})
    wait_for(lambda: phase_of(cluster, FTJ, "plain", namespace) == "Running", what="Running")
    assert get_json(cluster, FTJ, "plain", namespace)["status"]["restarts"] == 1
