"""One pod contract for vLLM serving: the pod and `kubetune run` start the same server, and adapters change in the
running server (adapter list ConfigMap + sidecar) instead of rolling the pods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.inferenceservice import InferenceService
from kubetune.config.mapping.serve import read_wanted
from kubetune.config.mapping.vllm import render_vllm_command
from kubetune.local.context import LocalContext
from kubetune.local.serve import local_serve_config, resolve_served
from kubetune.local.sources import Artifact
from kubetune.local.workdir import WorkDir
from kubetune.serve.adapters import Plan, plan
from kubetune.uris import UriResolver
from kubetune_operator.render import pods
from kubetune_operator.render.serving import ServingInputs, render_serving
from kubetune_operator.settings import RenderSettings
from tests.builders import make_inferenceservice

SETTINGS = RenderSettings(runtime_image="runtime:test", vllm_image="vllm:test")
POD_ROOT = Path("/mnt/pvc")
KEY_REF = {"name": "bot-key", "key": "api-key"}


def parent(body: dict[str, Any]) -> dict[str, Any]:
    meta = {**body["metadata"], "namespace": "team-a", "uid": "9f8e7d6c-0000-4000-8000-000000000003", "generation": 1}
    return {**body, "metadata": meta}


def vllm_service(adapters: list[dict[str, str]] | None, **spec: Any) -> tuple[dict[str, Any], InferenceService]:
    body = parent(make_inferenceservice(
        "bot", model={"uri": "pvc://models/merged"}, engine={"backend": "vllm", "maxModelLen": 512,
                                                             "dtype": "bfloat16", "extraArgs": ["--seed", "1"]},
        resources={"gpusPerReplica": 1}, auth={"apiKeySecretRef": KEY_REF}, **spec))
    if adapters is not None:
        body["spec"]["adapters"] = adapters
    return body, InferenceService.model_validate(body)


def children(body: dict[str, Any], isvc: InferenceService, inputs: ServingInputs) -> dict[str, dict[str, Any]]:
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in render_serving(body, isvc, inputs, SETTINGS)}


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("case", ["uri-model-with-adapters", "finetunejob-adapter-as-model"])
def test_local_run_and_pod_start_the_same_vllm_server(tmp_path, case):
    """`kubetune run --pvc-root /mnt/pvc --host 0.0.0.0` renders exactly the pod's argv and environment."""
    adapters = [{"name": "v2", "uri": "pvc://models/a/v2"}]
    body, isvc = vllm_service(adapters)
    if case == "uri-model-with-adapters":
        model = Artifact("pvc://models/merged")
        inputs = ServingInputs(model_uri="pvc://models/merged", name="bot", adapters=(("v2", "pvc://models/a/v2"),))
    else:
        model = Artifact("pvc://models/sft", "lora-adapter", base_model_uri="pvc://models/base")
        inputs = ServingInputs(model_uri="pvc://models/base", name="bot", adapters=(("v2", "pvc://models/a/v2"),),
                               default_adapter="pvc://models/sft")
    pod = containers(children(body, isvc, inputs)["Deployment/bot"])["server"]

    ctx = LocalContext(work=WorkDir(tmp_path), pvc_root=POD_ROOT, host="0.0.0.0", api_key="sk-local")
    served = resolve_served(isvc, [model, Artifact("pvc://models/a/v2")], UriResolver(pvc_root=POD_ROOT))
    local = render_vllm_command(local_serve_config(isvc, served, ctx))

    assert pod["command"] == local.argv
    assert "--lora-modules" not in local.argv or local.argv[local.argv.index("--lora-modules") + 1] == \
        "bot=/mnt/pvc/models/sft"
    pod_env = env_of(pod)
    # the one legitimate difference: the pod's key comes from the Secret, a local run's from --api-key
    assert pod_env.pop("VLLM_API_KEY") == {"secretKeyRef": KEY_REF}
    assert local.env.pop("VLLM_API_KEY") == "sk-local"
    assert pod_env.pop("PYTHONUNBUFFERED") == "1"
    for name in pods.WRITABLE_ENV:  # the pod's HOME and caches live in its emptyDirs; a local run keeps the user's
        pod_env.pop(name)
    assert pod_env == local.env
    assert local.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


ONE = [{"name": "v2", "uri": "pvc://models/a/v2"}]
TWO = [*ONE, {"name": "v3", "uri": "pvc://models/a/v3"}]


def inputs_for(adapters: list[dict[str, str]]) -> ServingInputs:
    return ServingInputs(model_uri="pvc://models/merged", name="bot",
                         adapters=tuple((a["name"], a["uri"]) for a in adapters))


@pytest.mark.parametrize(("before", "after"), [([], ONE), (ONE, TWO), (TWO, ONE), (ONE, [])],
                         ids=["add-first", "add", "remove", "remove-last"])
def test_changing_adapters_keeps_the_pod_template_and_changes_the_list(before, after):
    old = children(*vllm_service(before), inputs_for(before))
    new = children(*vllm_service(after), inputs_for(after))
    assert new["Deployment/bot"] == old["Deployment/bot"]  # nothing rolls
    wanted = json.loads(new["ConfigMap/bot-adapters"]["data"]["adapters.json"])
    assert wanted == {"adapters": [{"name": a["name"], "path": "/mnt/pvc/" + a["uri"].removeprefix("pvc://")}
                                   for a in after]}
    assert new["ConfigMap/bot-adapters"] != old["ConfigMap/bot-adapters"]


def test_adapters_on_a_new_claim_roll_once_for_the_volume():
    old = children(*vllm_service(ONE), inputs_for(ONE))
    other = [*ONE, {"name": "v9", "uri": "pvc://other-claim/v9"}]
    new = children(*vllm_service(other), inputs_for(other))
    assert new["Deployment/bot"] != old["Deployment/bot"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in new["Deployment/bot"]["spec"]["template"]["spec"][
        "volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"models", "other-claim"}


def test_hf_backend_and_vllm_without_adapters_have_no_sidecar():
    body, isvc = vllm_service(None)
    plain = children(body, isvc, inputs_for([]))
    assert set(plain) == {"Service/bot", "Deployment/bot"}
    assert list(containers(plain["Deployment/bot"])) == ["server"]
    assert "--enable-lora" not in containers(plain["Deployment/bot"])["server"]["command"]
    hf_body = parent(make_inferenceservice("bot", adapters=ONE))
    hf = children(hf_body, InferenceService.model_validate(hf_body), inputs_for(ONE))
    assert list(containers(hf["Deployment/bot"])) == ["server"] and "ConfigMap/bot-adapters" not in hf


def test_sidecar_reads_the_list_and_alone_holds_an_api_token():
    body, isvc = vllm_service(ONE)
    deployment = children(body, isvc, inputs_for(ONE))["Deployment/bot"]
    pod = deployment["spec"]["template"]["spec"]
    server, sidecar = containers(deployment)["server"], containers(deployment)["adapters"]
    assert sidecar["image"] == server["image"] == "vllm:test"
    assert sidecar["command"] == ["kubetune", "adapters", "sync", "/etc/kubetune/adapters/adapters.json",
                                  "--server", "http://127.0.0.1:8000"]
    env = env_of(sidecar)
    assert (env["KUBETUNE_INFERENCESERVICE"], env["KUBETUNE_NAMESPACE"]) == ("bot", "team-a")
    assert env["VLLM_API_KEY"] == {"secretKeyRef": KEY_REF}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # a whole-ConfigMap directory (no items, no subPath), so the kubelet refreshes it in the running pod
    assert volumes["adapters"] == {"name": "adapters", "configMap": {"name": "bot-adapters"}}
    assert "serviceAccountToken" in volumes["adapters-token"]["projected"]["sources"][0]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "kubetune-runtime"
    assert {m["name"] for m in sidecar["volumeMounts"]} == {"adapters", "adapters-token", *pods.WRITABLE}
    assert not {"adapters", "adapters-token"} & {m["name"] for m in server["volumeMounts"]}


def test_adapter_as_model_is_never_unloaded_by_the_sidecar():
    body, isvc = vllm_service(ONE)
    inputs = ServingInputs(model_uri="pvc://models/base", name="bot", adapters=(("v2", "pvc://models/a/v2"),),
                           default_adapter="pvc://models/sft")
    sidecar = containers(children(body, isvc, inputs)["Deployment/bot"])["adapters"]
    assert sidecar["command"][-2:] == ["--keep", "bot"]


@pytest.mark.parametrize(("wanted", "loaded", "keep", "expected"), [
    ({"a": "/a"}, {}, frozenset(), Plan(load=(("a", "/a"),))),
    ({}, {"a": "/a"}, frozenset(), Plan(unload=("a",))),
    ({"a": "/a", "b": "/b"}, {"a": "/a", "c": "/c"}, frozenset(), Plan(unload=("c",), load=(("b", "/b"),))),
    ({"a": "/a2"}, {"a": "/a"}, frozenset(), Plan(unload=("a",), load=(("a", "/a2"),))),
    ({}, {"bot": "/sft", "a": "/a"}, frozenset({"bot"}), Plan(unload=("a",))),
    ({"a": "/a"}, {"a": "/a"}, frozenset(), Plan()),
    ({"a": "/a/"}, {"a": "/a"}, frozenset(), Plan()),
], ids=["load", "unload", "both", "path-changed-reloads", "keep", "in-sync", "trailing-slash-is-the-same-path"])
def test_adapter_plan(wanted, loaded, keep, expected):
    assert plan(wanted, loaded, keep) == expected


def test_missing_list_file_means_no_adapters(tmp_path):
    assert read_wanted(tmp_path / "absent.json") == {}
    (tmp_path / "a.json").write_text('{"adapters": [{"name": "x", "path": "/p"}]}')
    assert read_wanted(tmp_path / "a.json") == {"x": "/p"}
