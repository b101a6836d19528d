"""The vLLM engine in the cluster: an InferenceService with ``backend: vllm`` serves the base model and a LoRA adapter
trained by a FineTuneJob from the vLLM image built from images/, and swapping its adapters reloads them in the
running server (the adapters sidecar) without rolling the pod.

Nothing is played by the test: the operator renders the pod, the kubelet runs images/Dockerfile.vllm's image,
vLLM's CPU build serves, the sidecar reports what the server holds into the resource's status.
"""

from __future__ import annotations

import json

import pytest

from tests.node.conftest import API_KEY_SECRET
from tests.support import nodeflow as flow
from tests.support.node import Node

pytestmark = [pytest.mark.node, pytest.mark.slow]

STEPS = 20
SMALL = {"requests": {"cpu": "100m", "memory": "512Mi"}}
# vLLM on CPU sizes its KV cache from the node's free memory unless told; one GiB serves this model many times over.
VLLM_ENGINE = {"backend": "vllm", "maxModelLen": 256, "maxLoraRank": 8,
               "extraArgs": ["--kv-cache-memory-bytes=1073741824"]}
VLLM_START_S = 900  # three processes import vLLM and compile on two shared cores: 2-5 minutes seen


def adapter_job(namespace: str) -> dict:
    """A plain LoRA (no trained embeddings: vLLM serves adapters of linear layers) on the quickstart base."""
    return flow.quickstart(
        "finetunejob.yaml",
        metadata={"name": "tuned", "namespace": namespace},
        spec={"launcher": "job", "resources": SMALL,
              "training": {"maxSteps": STEPS, "saveSteps": 10, "loggingSteps": 5, "perDeviceBatchSize": 16},
              "lora": {"rank": 8, "alpha": 16, "target": ["all"], "additionalTarget": None}},
    )


def vllm_service(namespace: str, adapters: list[dict]) -> dict:
    body = flow.quickstart(
        "inferenceservice.yaml",
        metadata={"name": "chat", "namespace": namespace},
        spec={"servedModelName": "base", "engine": VLLM_ENGINE, "adapters": adapters,
              "resources": {"gpusPerReplica": 0, **SMALL}, "startupTimeoutSeconds": VLLM_START_S,
              "auth": {"apiKeySecretRef": {"name": API_KEY_SECRET[0], "key": API_KEY_SECRET[1]}}})
    body["spec"]["model"] = {"uri": "pvc://models/quickstart-base"}
    return body


def server_pods(node: Node, ns: str) -> list[dict]:
    return flow.items(node, "pods", ns, "kubetune.io/inferenceservice=chat")


def test_vllm_inferenceservice_serves_base_and_adapter_and_swaps_adapters_without_restart(node: Node,
                                                                                         node_namespace: str):
    ns = node_namespace
    pvc_root = flow.volumes(node, ns)
    heldout = flow.prepare_quickstart(pvc_root, train_size=STEPS * 16 * 2, heldout_size=4)
    node.apply(adapter_job(ns))
    flow.wait_phase(node, "finetunejobs", "tuned", ns, "Succeeded", timeout_s=900)

    node.apply(vllm_service(ns, [{"name": "tuned", "fineTuneJobRef": {"name": "tuned"}}]))
    ready = flow.wait_phase(node, "inferenceservices", "chat", ns, "Ready", timeout_s=VLLM_START_S + 120)
    assert set(ready.get("servedModels") or []) >= {"base", "tuned"}, ready
    pods = server_pods(node, ns)
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    pod = pods[0]
    images = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
    assert images == {"server": node.images["VLLM_IMAGE"], "adapters": node.images["VLLM_IMAGE"]}, images
    assert pod["spec"]["containers"][0]["command"][:2] == ["vllm", "serve"]
    flow.wait_for(lambda: flow.status_of(node, "inferenceservices", "chat", ns).get("loadedAdapters") == ["tuned"],
                  300, "status.loadedAdapters == ['tuned']")

    url = f"http://chat.{ns}.svc.cluster.local:8000/v1"
    result = flow.run_client_pod(node, ns, node.images["CLIENT_IMAGE"], {"base": url, "tuned": url}, heldout,
                                 API_KEY_SECRET)
    assert set(result["base"]["models"]) >= {"base", "tuned"}, result
    assert all(isinstance(r, str) for m in result for r in result[m]["replies"])
    # Greedy answers of the adapter differ from the base's: the server applies the trained LoRA weights.
    assert result["base"]["replies"] != result["tuned"]["replies"], json.dumps(result, indent=1)

    # Swap the adapters: the ConfigMap changes, the sidecar unloads `tuned` and loads `tuned-again` in the running
    # server; the Deployment's pod template and the pod stay.
    template = flow.get(node, "deployment", "chat", ns)["spec"]["template"]
    node.apply(vllm_service(ns, [{"name": "tuned-again", "fineTuneJobRef": {"name": "tuned"}}]))
    flow.wait_for(lambda: flow.status_of(node, "inferenceservices", "chat", ns).get("loadedAdapters")
                  == ["tuned-again"], 300, "status.loadedAdapters == ['tuned-again']")
    assert flow.get(node, "deployment", "chat", ns)["spec"]["template"] == template
    after = server_pods(node, ns)
    assert [p["metadata"]["uid"] for p in after] == [pod["metadata"]["uid"]], "the adapter swap rolled the pod"
    restarts = {c["name"]: c.get("restartCount", 0) for c in after[0]["status"].get("containerStatuses") or []}
    assert restarts.get("server") == 0, restarts
    sidecar_log = node.kubectl("logs", "-n", ns, pod["metadata"]["name"], "-c", "adapters", check=False).stdout
    assert "unloaded ['tuned']" in sidecar_log and "loaded ['tuned-again']" in sidecar_log, sidecar_log[-2000:]
