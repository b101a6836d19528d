"""InferenceService on a real apiserver: Deployment + Service, Ready once the Deployment is available (played by
the test), spec changes roll the pods, the scale subresource scales them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.builders import make_inferenceservice
from tests.support.operator import field_of, get_json, patch_status, phase_of, wait_for

pytestmark = pytest.mark.cluster

ISVC, DEPLOY = "inferenceservices.kubetune.io", "deployments.apps"
HASH = "kubetune.io/spec-hash"


def available(replicas: int) -> dict[str, Any]:
    return {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
            "updatedReplicas": replicas, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"}]}


def template_hash(cluster, namespace: str) -> str | None:
    return field_of(cluster, DEPLOY, "bot", namespace, "spec", "template", "metadata", "annotations", HASH)


def test_inferenceservice_becomes_ready_rolls_and_scales(cluster, operator, namespace):
    body = make_inferenceservice("bot", model={"uri": "pvc://models/merged/"}, servedModelName="support-bot",
                                 auth={"apiKeySecretRef": {"name": "bot-key", "key": "api-key"}})
    cluster.apply({**body, "metadata": {"name": "bot", "namespace": namespace}})
    deployment = wait_for(lambda: get_json(cluster, DEPLOY, "bot", namespace), what="Deployment")
    service = get_json(cluster, "service", "bot", namespace)
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 8000
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kubetune", "serve", "/etc/kubetune/serve.yaml"]
    key_env = next(e for e in container["env"] if e["name"] == "API_KEY")
    assert key_env["valueFrom"]["secretKeyRef"] == {"name": "bot-key", "key": "api-key"}
    wait_for(lambda: phase_of(cluster, ISVC, "bot", namespace) == "Deploying", what="Deploying")

    patch_status(cluster, DEPLOY, "bot", namespace, available(1))
    wait_for(lambda: phase_of(cluster, ISVC, "bot", namespace) == "Ready", what="Ready")
    status = get_json(cluster, ISVC, "bot", namespace)["status"]
    assert status["url"] == f"http://bot.{namespace}.svc.cluster.local:8000/v1"
    assert status["servedModels"] == ["support-bot"] and status["readyReplicas"] == 1
    assert status["selector"] == "kubetune.io/inferenceservice=bot"
    table = cluster.kubectl("get", "inferenceservices.kubetune.io", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODEL", "URL", "READY", "REPLICAS", "AGE"]
    assert table[1].split()[:5] == ["bot", "support-bot", status["url"], "True", "1"]

    before = template_hash(cluster, namespace)
    cluster.kubectl("scale", "inferenceservices.kubetune.io/bot", "-n", namespace, "--replicas=3")
    wait_for(lambda: field_of(cluster, DEPLOY, "bot", namespace, "spec", "replicas") == 3, what="scaled")
    assert template_hash(cluster, namespace) == before  # scaling does not roll the pods

    cluster.kubectl("patch", ISVC, "bot", "-n", namespace, "--type=merge", "-p",
                    '{"spec":{"engine":{"backend":"hf","maxModelLen":2048}}}')
    wait_for(lambda: template_hash(cluster, namespace) != before, what="rolled template")
    config = get_json(cluster, "configmap", "bot-serve-config", namespace)["data"]["serve.yaml"]
    assert yaml.safe_load(config)["max_model_len"] == 2048
    isvc = get_json(cluster, ISVC, "bot", namespace)
    assert isvc["status"]["observedGeneration"] == isvc["metadata"]["generation"]


def adapter_names(cluster, namespace: str) -> list[str] | None:
    config = get_json(cluster, "configmap", "bot-adapters", namespace)
    if config is None:
        return None
    return [a["name"] for a in json.loads(config["data"]["adapters.json"])["adapters"]]


def test_vllm_adapters_change_in_the_running_pods_without_a_roll(cluster, operator, namespace):
    """Adding or removing an adapter rewrites the adapters ConfigMap; the Deployment (template, generation) stays."""
    body = make_inferenceservice("bot", model={"uri": "pvc://models/merged/"}, engine={"backend": "vllm"},
                                 resources={"gpusPerReplica": 0},
                                 adapters=[{"name": "sql", "uri": "pvc://models/a/sql"}])
    cluster.apply({**body, "metadata": {"name": "bot", "namespace": namespace}})
    deployment = wait_for(lambda: get_json(cluster, DEPLOY, "bot", namespace), what="Deployment")
    assert wait_for(lambda: adapter_names(cluster, namespace), what="adapters ConfigMap") == ["sql"]
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["server", "adapters"]
    assert "--lora-modules" not in pod["containers"][0]["command"]
    patch_status(cluster, DEPLOY, "bot", namespace, available(1))
    wait_for(lambda: phase_of(cluster, ISVC, "bot", namespace) == "Ready", what="Ready")
    # what the sidecar reports; the operator never writes (or prunes) it
    patch_status(cluster, ISVC, "bot", namespace, {"loadedAdapters": ["sql"]})

    cluster.kubectl("patch", ISVC, "bot", "-n", namespace, "--type=merge", "-p", json.dumps(
        {"spec": {"adapters": [{"name": "sql", "uri": "pvc://models/a/sql"},
                               {"name": "chat", "uri": "pvc://models/a/chat"}]}}))
    wait_for(lambda: adapter_names(cluster, namespace) == ["sql", "chat"], what="ConfigMap lists chat")
    wait_for(lambda: (get_json(cluster, ISVC, "bot", namespace) or {}).get("status", {}).get("servedModels")
             == ["bot", "sql", "chat"], what="servedModels with chat")
    after = get_json(cluster, DEPLOY, "bot", namespace)
    assert after["spec"]["template"] == deployment["spec"]["template"]
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"]
    status = get_json(cluster, ISVC, "bot", namespace)["status"]
    assert status["loadedAdapters"] == ["sql"] and status["phase"] == "Ready"

    cluster.kubectl("patch", ISVC, "bot", "-n", namespace, "--type=merge", "-p", '{"spec":{"adapters":[]}}')
    wait_for(lambda: adapter_names(cluster, namespace) == [], what="ConfigMap empty")
    assert get_json(cluster, DEPLOY, "bot", namespace)["metadata"]["generation"] == deployment["metadata"]["generation"]
