"""spec.env / spec.envFrom / spec.storage on the pods of all three kinds: table cases over pure renders."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport
from kubetune_operator.policy import ENV_NOT_ALLOWED, check_env
from kubetune_operator.reconcile.finetunejob import read_uris, runtime_config
from kubetune_operator.render.export import ExportInputs, render_export
from kubetune_operator.render.serving import ServingInputs, render_serving
from kubetune_operator.render.training import TrainInputs, render_training
from kubetune_operator.resolve import Artifact
from kubetune_operator.settings import RenderSettings
from tests.builders import make_finetunejob, make_inferenceservice, make_modelexport

UID = "1a2b3c4d-0000-4000-8000-000000000001"
SETTINGS = RenderSettings(runtime_image="runtime:test", vllm_image="vllm:test")
TRACKER_ENV = [{"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.tracking:5000"},
               {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}]
S3 = {"s3": {"endpoint": "http://seaweedfs.storage:8333", "region": "eu-west-1",
             "credentialsSecretRef": {"name": "s3-credentials"}}}


def _parent(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "namespace": "team-a", "uid": UID, "generation": 1}}


def train(**spec: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = _parent(make_finetunejob("run", **spec))
    job = FineTuneJob.model_validate(body)
    out = f"{job.spec.output.uri.rstrip('/')}/run-1a2b3c4d/"
    resolutions = [Artifact(uri=job.spec.model.uri or "")]
    inputs = TrainInputs(output_uri=out, read_uris=read_uris(job, resolutions))
    return body, render_training(body, job, inputs, runtime_config(job, out, {}), SETTINGS)


def export(inputs: ExportInputs, **spec: Any) -> list[dict[str, Any]]:
    body = _parent(make_modelexport("merged", **spec))
    return render_export(body, ModelExport.model_validate(body), inputs, SETTINGS)


def serve(inputs: ServingInputs, **spec: Any) -> list[dict[str, Any]]:
    body = _parent(make_inferenceservice("bot", **spec))
    return render_serving(body, InferenceService.model_validate(body), inputs, SETTINGS)


def pod(children: list[dict[str, Any]]) -> dict[str, Any]:
    kind = {c["kind"]: c for c in children}
    if "PyTorchJob" in kind:
        return kind["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    workload = kind.get("Job") or kind["Deployment"]
    return workload["spec"]["template"]["spec"]


def names(container: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container["env"]]


S3_TRAIN = {"model": {"uri": "s3://models/base/qwen"}, "datasets": [{"uri": "s3://data/sft/train.jsonl"}],
            "output": {"uri": "s3://models/team-a/"}, "storage": S3}


def test_s3_inputs_are_staged_by_an_init_container_and_the_output_uploaded_after_training():
    _, children = train(**S3_TRAIN)
    spec = pod(children)
    [stage] = spec["initContainers"]
    main = spec["containers"][0]
    config = children[0]["data"]["config.yaml"]

    assert stage["command"] == ["kubetune", "stage", "--in", "s3://models/base/qwen", "--in",
                                "s3://data/sft/train.jsonl"]
    assert stage["image"] == main["image"] == "runtime:test"
    assert main["command"] == ["kubetune", "stage", "--out", "s3://models/team-a/run-1a2b3c4d/", "--",
                               "kubetune", "train", "/etc/kubetune/config.yaml"]
    assert "/mnt/s3/models/base/qwen" in config and "/mnt/s3/data/sft/train.jsonl" in config
    mirror = {"name": "s3-mirror", "mountPath": "/mnt/s3"}
    assert mirror in stage["volumeMounts"] and mirror in main["volumeMounts"]
    assert {"name": "s3-mirror", "emptyDir": {}} in spec["volumes"]
    for container in (stage, main):
        env = {e["name"]: e for e in container["env"]}
        assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://seaweedfs.storage:8333"
        assert env["AWS_REGION"]["value"] == "eu-west-1"
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {
            "secretKeyRef": {"name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"}}
        assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_pvc_only_specs_render_no_staging():
    _, children = train()
    spec = pod(children)
    assert "initContainers" not in spec
    assert spec["containers"][0]["command"][:2] == ["kubetune", "train"]
    assert all(v["name"] != "s3-mirror" for v in spec["volumes"])


@pytest.mark.parametrize("children", [
    lambda spec: train(**{**S3_TRAIN, **spec})[1],
    lambda spec: export(ExportInputs(model_uri="s3://models/base", adapter_uri="s3://models/team-a/run-1/",
                                     output_uri="s3://models/merged-9f8e7d6c/"), **spec),
    lambda spec: serve(ServingInputs(model_uri="s3://models/merged/", name="bot"), **spec),
], ids=["FineTuneJob", "ModelExport", "InferenceService"])
def test_env_and_env_from_reach_every_container_before_kubetune_own(children):
    spec = pod(children({"env": TRACKER_ENV, "envFrom": [{"secretRef": {"name": "tracker"}}], "storage": S3}))
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        env = names(container)
        assert env[:2] == ["MLFLOW_TRACKING_URI", "WANDB_API_KEY"]
        assert {"HOME", "AWS_ACCESS_KEY_ID"} <= set(env[2:])
        assert container["envFrom"] == [{"secretRef": {"name": "tracker"}}]
    assert [c["name"] for c in spec["initContainers"]] == ["stage-inputs"]


def test_export_uploads_its_output_and_serving_only_downloads():
    job = pod(export(ExportInputs(model_uri="pvc://models/base", output_uri="s3://models/merged-9f8e7d6c/")))
    deployment = pod(serve(ServingInputs(model_uri="s3://models/merged/", name="bot"), engine={"backend": "vllm"}))
    assert job["containers"][0]["command"][:4] == ["kubetune", "stage", "--out", "s3://models/merged-9f8e7d6c/"]
    assert "initContainers" not in job
    assert deployment["initContainers"][0]["image"] == "runtime:test"  # the vLLM image needs no kubetune stage
    assert deployment["containers"][0]["command"][0] != "kubetune"


def test_cache_claim_is_the_hub_cache_of_every_pod():
    spec = pod(train(model={"uri": "hf://org/base", "revision": "v1"}, storage={"cacheClaim": "hub-cache"})[1])
    main = spec["containers"][0]
    assert {"name": "hub-cache", "persistentVolumeClaim": {"claimName": "hub-cache"}} in spec["volumes"]
    assert {"name": "hub-cache", "mountPath": "/mnt/hub-cache"} in main["volumeMounts"]
    assert {"name": "HF_HUB_CACHE", "value": "/mnt/hub-cache"} in main["env"]


@pytest.mark.parametrize("name", ["KUBETUNE_OUTPUT_DIR", "PET_NODE_RANK", "HOME", "HF_HUB_CACHE", "MASTER_ADDR"])
def test_kubetune_variables_are_refused_by_the_schema(name):
    with pytest.raises(ValidationError, match="set by kubetune and cannot be replaced"):
        FineTuneJob.model_validate(make_finetunejob("x", env=[{"name": name, "value": "x"}]))
    with pytest.raises(ValidationError, match="set by kubetune"):
        InferenceService.model_validate(make_inferenceservice("x", env=[{"name": name, "value": "x"}]))


def test_env_sources_need_exactly_one_reference():
    with pytest.raises(ValidationError, match="exactly one of secretRef or configMapRef"):
        ModelExport.model_validate(make_modelexport("x", envFrom=[{"prefix": "A_"}]))
    with pytest.raises(ValidationError, match="exactly one of secretKeyRef or configMapKeyRef"):
        ModelExport.model_validate(make_modelexport("x", env=[{"name": "A", "valueFrom": {}}]))


@pytest.mark.parametrize(("spec", "refused"), [
    ({"env": [{"name": "HF_TOKEN", "value": "x"}], "model": {"uri": "hf://org/m",
                                                            "credentialsSecretRef": {"name": "hf"}}}, "HF_TOKEN"),
    ({"env": [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}], "storage": S3}, "AWS_ACCESS_KEY_ID"),
    ({"env": [{"name": "HF_TOKEN", "value": "x"}]}, None),  # kubetune sets no token here: the user's is fine
    ({"env": [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]}, None),
], ids=["hf-token-from-credentials", "s3-keys-from-storage", "own-hf-token", "own-s3-keys"])
def test_operator_refuses_a_name_kubetune_sets_for_this_spec(spec, refused):
    body, children = train(**spec)
    denied = check_env(body["spec"], children)
    if refused is None:
        assert denied is None
    else:
        assert denied == (ENV_NOT_ALLOWED, f"spec.env[0]: {refused} is set by kubetune for these pods and cannot "
                          "be replaced; remove it (or use the spec field that sets it)")


def test_operator_refuses_reserved_names_stored_before_the_schema():
    body, children = train()
    body["spec"]["env"] = [{"name": "KUBETUNE_OUTPUT_URI", "value": "s3://elsewhere/"}]
    assert check_env(body["spec"], children)[0] == ENV_NOT_ALLOWED
