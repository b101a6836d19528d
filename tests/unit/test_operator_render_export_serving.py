"""Render of ModelExport and InferenceService children: table cases, pure."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport
from kubetune.config.serve_args import ServeConfig
from kubetune_operator.render.export import ExportInputs, render_export
from kubetune_operator.render.serving import ServingInputs, render_serving, template_hash, url, vllm_args
from kubetune_operator.settings import RenderSettings
from tests.builders import make_inferenceservice, make_modelexport

UID = "9f8e7d6c-0000-4000-8000-000000000002"
SETTINGS = RenderSettings(runtime_image="runtime:test", vllm_image="vllm:test")


def parent(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "namespace": "team-a", "uid": UID, "generation": 1}}


def export_children(inputs: ExportInputs, **spec: Any) -> list[dict[str, Any]]:
    body = parent(make_modelexport("merged", **spec))
    return render_export(body, ModelExport.model_validate(body), inputs, SETTINGS)


ADAPTER = ExportInputs(model_uri="hf://org/base", adapter_uri="pvc://models/team-a/sft-1a2b3c4d/",
                       output_uri="pvc://models/team-a/merged-9f8e7d6c/")


def test_export_job_runs_kubetune_export_on_the_resolved_document():
    config_map, job = export_children(ADAPTER, output={"uri": "pvc://models/team-a/"})
    assert (config_map["kind"], job["kind"]) == ("ConfigMap", "Job")
    assert job["metadata"]["name"] == "merged-export"
    assert job["metadata"]["labels"]["kubetune.io/modelexport"] == "merged"
    doc = yaml.safe_load(config_map["data"]["export.yaml"])
    assert doc["kind"] == "ModelExport" and doc["metadata"] == {"name": "merged", "namespace": "team-a", "uid": UID}
    assert doc["spec"]["source"] == {"model": {"uri": "hf://org/base"},
                                     "adapter": {"uri": "pvc://models/team-a/sft-1a2b3c4d/"}}
    ModelExport.model_validate(doc)  # the pod's file is itself a valid ModelExport
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "kubetune-runtime"
    c = pod["containers"][0]
    assert c["command"] == ["kubetune", "export", "/etc/kubetune/export.yaml"]
    assert {m["mountPath"]: m["readOnly"] for m in c["volumeMounts"] if m["mountPath"].startswith("/mnt")} == {
        "/mnt/pvc/models": False}


@pytest.mark.parametrize(("inputs", "spec", "source"), [
    (ExportInputs(model_uri="pvc://m/full/", output_uri="pvc://m/out/x/"), {}, {"model": {"uri": "pvc://m/full/"}}),
    (ExportInputs(model_uri="hf://org/base", output_uri="pvc://m/out/x/"),
     {"source": {"fineTuneJobRef": None, "model": {"uri": "hf://org/base",
                                                   "credentialsSecretRef": {"name": "hf", "key": "t"}}}},
     {"model": {"uri": "hf://org/base", "credentialsSecretRef": {"name": "hf", "key": "t"}}}),
], ids=["full-model", "uri-with-credentials"])
def test_export_sources(inputs, spec, source):
    config_map, job = export_children(inputs, **spec)
    assert yaml.safe_load(config_map["data"]["export.yaml"])["spec"]["source"] == source
    names = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert ("HF_TOKEN" in names) == ("credentialsSecretRef" in source["model"])


def test_export_gpu_and_queue():
    _, job = export_children(ADAPTER, resources={"gpus": 1}, queueName="q")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "q"
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}


def isvc(**spec: Any) -> tuple[dict[str, Any], InferenceService]:
    body = parent(make_inferenceservice("bot", **spec))
    return body, InferenceService.model_validate(body)


BASE = ServingInputs(model_uri="pvc://models/merged/", name="bot")
WITH_ADAPTERS = ServingInputs(model_uri="pvc://models/merged/", name="bot",
                              adapters=(("v2", "pvc://models/a/v2/"), ("v3", "hf://org/v3")))
ADAPTER_AS_MODEL = ServingInputs(model_uri="hf://org/base", name="bot", default_adapter="pvc://models/sft-1/")


TWO_ADAPTERS = [{"name": "v2", "uri": "pvc://models/a/v2/"}, {"name": "v3", "uri": "hf://org/v3"}]


@pytest.mark.parametrize(("spec", "inputs", "expected"), [
    ({"engine": {"backend": "vllm"}, "resources": {"gpusPerReplica": 1}}, BASE,
     ["vllm", "serve", "/mnt/pvc/models/merged", "--host", "0.0.0.0", "--port", "8000", "--served-model-name", "bot",
      "--tensor-parallel-size", "1", "--gpu-memory-utilization", "0.9"]),
    ({"engine": {"backend": "vllm", "tensorParallelSize": 2, "maxModelLen": 8192, "dtype": "bfloat16",
                 "extraArgs": ["--enforce-eager"]},
      "resources": {"gpusPerReplica": 2}, "port": 9000, "adapters": TWO_ADAPTERS}, WITH_ADAPTERS,
     ["vllm", "serve", "/mnt/pvc/models/merged", "--host", "0.0.0.0", "--port", "9000", "--served-model-name", "bot",
      "--tensor-parallel-size", "2", "--dtype", "bfloat16", "--max-model-len", "8192",
      "--gpu-memory-utilization", "0.9", "--enable-lora", "--max-loras", "4", "--max-lora-rank", "64",
      "--enforce-eager"]),
    ({"engine": {"backend": "vllm"}, "resources": {"gpusPerReplica": 1}}, ADAPTER_AS_MODEL,
     ["vllm", "serve", "org/base", "--host", "0.0.0.0", "--port", "8000", "--served-model-name", "bot-base",
      "--tensor-parallel-size", "1", "--gpu-memory-utilization", "0.9", "--enable-lora",
      "--lora-modules", "bot=/mnt/pvc/models/sft-1", "--max-loras", "4", "--max-lora-rank", "64"]),
], ids=["plain", "tp2-adapters-at-run-time-extra", "adapter-as-model"])
def test_vllm_args(spec, inputs, expected):
    _, obj = isvc(**spec)
    assert vllm_args(obj, inputs) == expected


@pytest.mark.parametrize(("inputs", "config", "served"), [
    (WITH_ADAPTERS, {"model_name_or_path": "/mnt/pvc/models/merged", "served_model_name": "bot",
                     "lora_adapters": [{"name": "v2", "path": "/mnt/pvc/models/a/v2"},
                                       {"name": "v3", "path": "org/v3"}]},
     ["bot", "v2", "v3"]),
    (ADAPTER_AS_MODEL, {"model_name_or_path": "org/base", "default_adapter": "/mnt/pvc/models/sft-1"}, ["bot"]),
], ids=["adapters", "adapter-as-model"])
def test_hf_serve_config(inputs, config, served):
    body, obj = isvc(engine={"backend": "hf", "maxModelLen": 1024})
    config_map = render_serving(body, obj, inputs, SETTINGS)[0]
    assert config_map["metadata"]["name"] == "bot-serve-config"
    rendered = yaml.safe_load(config_map["data"]["serve.yaml"])
    assert config.items() <= rendered.items()
    assert (rendered["infer_backend"], rendered["port"], rendered["max_model_len"]) == ("hf", 8000, 1024)
    assert inputs.served_models("hf") == served


@pytest.mark.parametrize(("engine", "threads"), [
    ({"backend": "hf", "threads": 3}, 3),
    ({"backend": "hf"}, None),
], ids=["explicit", "from-the-container"])
def test_hf_threads_render_into_the_pod_config_as_locally(engine, threads):
    from kubetune.config.mapping.serve import serve_config_from_inferenceservice

    body, obj = isvc(engine=engine)
    rendered = yaml.safe_load(render_serving(body, obj, BASE, SETTINGS)[0]["data"]["serve.yaml"])
    assert rendered.get("threads") == threads
    assert ServeConfig.model_validate(rendered).threads == threads
    assert serve_config_from_inferenceservice(obj, model_path="/m", adapters={}).threads == threads


def test_hf_backend_deployment_and_service():
    body, obj = isvc(auth={"apiKeySecretRef": {"name": "key", "key": "api-key"}}, startupTimeoutSeconds=600)
    config_map, service, deployment = render_serving(body, obj, WITH_ADAPTERS, SETTINGS)
    assert service["spec"]["selector"] == {"kubetune.io/inferenceservice": "bot"}
    assert service["spec"]["ports"][0]["port"] == 8000
    assert url(body, 8000) == "http://bot.team-a.svc.cluster.local:8000/v1"
    pod = deployment["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "runtime:test"
    assert c["command"] == ["kubetune", "serve", "/etc/kubetune/serve.yaml"]
    assert {v["name"]: v for v in pod["volumes"]}["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    env = {e["name"]: e.get("valueFrom") for e in c["env"]}
    assert env["API_KEY"] == {"secretKeyRef": {"name": "key", "key": "api-key"}}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 600
    assert "exec" in c["readinessProbe"] and "/v1/models" in c["readinessProbe"]["exec"]["command"][-1]
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["automountServiceAccountToken"] is False
    assert deployment["spec"]["selector"] == {"matchLabels": {"kubetune.io/inferenceservice": "bot"}}


def test_readiness_is_plain_http_without_auth():
    body, obj = isvc(engine={"backend": "vllm"}, resources={"gpusPerReplica": 1})
    children = render_serving(body, obj, BASE, SETTINGS)
    assert [c["kind"] for c in children] == ["Service", "Deployment"]
    c = children[1]["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "vllm:test"
    assert c["readinessProbe"]["httpGet"] == {"path": "/v1/models", "port": "http"}
    assert c["resources"]["limits"] == {"nvidia.com/gpu": 1}


@pytest.mark.parametrize(("change", "rolls"), [
    ({"replicas": 3}, False),
    ({"engine": {"backend": "hf", "maxModelLen": 4096}}, True),
    ({"servedModelName": "other"}, True),
], ids=["scale", "engine", "name"])
def test_template_hash_rolls_on_spec_changes_but_not_on_scaling(change, rolls):
    _, before = isvc()
    _, after = isvc(**change)
    assert (template_hash(before, BASE) != template_hash(after, BASE)) == rolls
