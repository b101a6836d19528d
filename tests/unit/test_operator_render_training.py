"""Render of a FineTuneJob's children: table cases, pure (no cluster, no clock)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kubetune.api.finetunejob import FineTuneJob
from kubetune_operator.reconcile.finetunejob import read_uris, runtime_config
from kubetune_operator.render.training import TrainInputs, render_training
from kubetune_operator.resolve import Artifact
from kubetune_operator.settings import RenderSettings
from tests.builders import make_finetunejob

UID = "1a2b3c4d-0000-4000-8000-000000000001"
SETTINGS = RenderSettings(runtime_image="runtime:test", vllm_image="vllm:test")


def parent(body: dict[str, Any], namespace: str = "team-a") -> dict[str, Any]:
    body = {**body, "metadata": {**body["metadata"], "namespace": namespace, "uid": UID, "generation": 1}}
    return body


def render(**spec: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = parent(make_finetunejob("sft-run", **spec))
    job = FineTuneJob.model_validate(body)
    out = f"{job.spec.output.uri.rstrip('/')}/sft-run-1a2b3c4d/"
    resolutions = [Artifact(uri=job.spec.model.uri or "")]
    config = runtime_config(job, out, {})
    inputs = TrainInputs(output_uri=out, read_uris=read_uris(job, resolutions))
    return body, render_training(body, job, inputs, config, SETTINGS)


def by_kind(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in children}


def container(pod_template: dict[str, Any]) -> dict[str, Any]:
    return pod_template["spec"]["containers"][0]


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


PVC = {"model": {"uri": "pvc://models/base/qwen"}, "datasets": [{"uri": "pvc://data/sft/train.jsonl"}],
       "output": {"uri": "pvc://models/team-a/"}}


@pytest.mark.parametrize(("spec", "nproc", "workers", "gpus"), [
    ({}, "1", None, None),
    ({"resources": {"nodes": 1, "gpusPerNode": 4}}, "4", None, 4),
    ({"resources": {"nodes": 3, "gpusPerNode": 8}, "distributed": {"strategy": "deepspeed", "zeroStage": 3}},
     "8", 2, 8),
], ids=["cpu", "one-node-4-gpu", "three-nodes-8-gpu"])
def test_pytorchjob_shape(spec, nproc, workers, gpus):
    _, children = render(**spec)
    assert [c["kind"] for c in children] == ["ConfigMap", "PyTorchJob"]
    ptj = by_kind(children)["PyTorchJob"]
    assert ptj["apiVersion"] == "kubeflow.org/v1"
    assert ptj["spec"]["nprocPerNode"] == nproc
    replicas = ptj["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    assert replicas.get("Worker", {}).get("replicas") == workers
    c = container(replicas["Master"]["template"])
    assert c["name"] == "pytorch"
    assert c["command"] == ["kubetune", "train", "/etc/kubetune/config.yaml"]
    assert c["ports"] == [{"name": "pytorchjob-port", "containerPort": 23456}]
    assert c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu") == gpus


def test_children_are_owned_and_labelled():
    _, children = render()
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["labels"]["kubetune.io/finetunejob"] == "sft-run"
        assert meta["ownerReferences"] == [{"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
                                            "name": "sft-run", "uid": UID, "controller": True,
                                            "blockOwnerDeletion": True}]
    assert by_kind(children)["ConfigMap"]["metadata"]["name"] == "sft-run-train-config"


def test_runtime_config_is_mounted_and_points_at_the_output_directory():
    _, children = render(**PVC)
    config = yaml.safe_load(by_kind(children)["ConfigMap"]["data"]["config.yaml"])
    assert config["output_dir"] == "/mnt/pvc/models/team-a/sft-run-1a2b3c4d"
    assert config["model_name_or_path"] == "/mnt/pvc/models/base/qwen"
    assert config["stage"] == "sft" and config["finetuning_type"] == "lora"
    assert config["created_by_uid"] == UID
    pod = by_kind(children)["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "sft-run-train-config"
    mounts = {m["mountPath"]: m for m in container(pod)["volumeMounts"]}
    assert mounts["/etc/kubetune"]["readOnly"] is True
    assert mounts["/mnt/pvc/data"]["readOnly"] is True  # only read
    assert mounts["/mnt/pvc/models"]["readOnly"] is False  # base model read, output written: one mount, writable
    assert volumes[mounts["/mnt/pvc/models"]["name"]]["persistentVolumeClaim"] == {"claimName": "models",
                                                                                   "readOnly": False}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory"}
    assert env(container(pod))["KUBETUNE_OUTPUT_URI"] == "pvc://models/team-a/sft-run-1a2b3c4d/"


@pytest.mark.parametrize(("spec", "expect_pod", "expect_job_labels", "expect_run_policy"), [
    ({"shmSize": "16Gi"}, {}, {}, {"suspend": False}),
    ({"nodeSelector": {"gpu": "h100"}, "priorityClassName": "high",
      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
      "affinity": {"nodeAffinity": {"x": 1}}},
     {"nodeSelector": {"gpu": "h100"}, "priorityClassName": "high", "affinity": {"nodeAffinity": {"x": 1}},
      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}, {},
     {"suspend": False}),
    ({"queueName": "team-a-gpu"}, {}, {"kueue.x-k8s.io/queue-name": "team-a-gpu"}, {}),
    ({"queueName": "q", "runPolicy": {"suspend": True}}, {}, {"kueue.x-k8s.io/queue-name": "q"}, {"suspend": True}),
    ({"runPolicy": {"backoffLimit": 5, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 60}}, {}, {},
     {"suspend": False, "backoffLimit": 5, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 60}),
], ids=["shm", "scheduling", "kueue", "kueue-suspended", "run-policy"])
def test_scheduling_block(spec, expect_pod, expect_job_labels, expect_run_policy):
    _, children = render(**spec)
    ptj = by_kind(children)["PyTorchJob"]
    pod = ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    for key, value in expect_pod.items():
        assert pod[key] == value
    for key, value in expect_job_labels.items():
        assert ptj["metadata"]["labels"][key] == value
    assert "kueue.x-k8s.io/queue-name" in ptj["metadata"]["labels"] or not spec.get("queueName")
    run_policy = ptj["spec"]["runPolicy"]
    for key, value in expect_run_policy.items():
        assert run_policy[key] == value
    if spec.get("queueName") and not spec.get("runPolicy", {}).get("suspend"):
        assert "suspend" not in run_policy  # Kueue admits the job by unsuspending it
    if "shmSize" in spec:
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}


def test_credentials_come_from_the_secret_by_reference():
    _, children = render(model={"uri": "hf://org/tiny", "credentialsSecretRef": {"name": "hf-token", "key": "tok"}})
    pod = by_kind(children)["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    assert env(container(pod))["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "tok"}}
    assert "hf-token" not in by_kind(children)["ConfigMap"]["data"]["config.yaml"]


def test_service_account_and_image_overrides():
    _, children = render(image="my/runtime:1", serviceAccountName="trainer")
    pod = by_kind(children)["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["serviceAccountName"] == "trainer"
    assert pod["containers"][0]["image"] == "my/runtime:1"
    _, children = render()
    pod = by_kind(children)["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kubetune-runtime"
    assert pod["containers"][0]["image"] == "runtime:test"


def test_indexed_job_launcher():
    _, children = render(launcher="job", resources={"nodes": 2, "gpusPerNode": 2})
    assert [c["kind"] for c in children] == ["ConfigMap", "Service", "Job"]
    svc, job = by_kind(children)["Service"], by_kind(children)["Job"]
    assert svc["metadata"]["name"] == "sft-run-nodes"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"kubetune.io/finetunejob": "sft-run"}
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "sft-run-nodes" and pod["restartPolicy"] == "Never"
    e = env(pod["containers"][0])
    assert e["PET_NNODES"] == "2" and e["PET_NPROC_PER_NODE"] == "2"
    assert e["PET_MASTER_ADDR"] == "sft-run-0.sft-run-nodes" and e["PET_MASTER_PORT"] == "23456"
    assert e["PET_NODE_RANK"] == {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}


def test_render_is_deterministic():
    assert render(**PVC) == render(**PVC)
