"""Adapters of a vLLM InferenceService without restarts: a ConfigMap with the list and a sidecar that applies it.

When ``spec.adapters`` is set (even ``[]``) on a ``backend: vllm`` service, its named adapters are not part of
the pod template: they go into the ConfigMap ``<name>-adapters`` (``adapters.json``, mounted as a directory, so
the kubelet refreshes it in running pods) and the ``adapters`` container of each pod, ``kubetune adapters sync``,
loads and unloads them in the running server through vLLM's runtime LoRA endpoints. The server's argv only says
LoRA is on, so adding or removing an adapter changes the ConfigMap and not the Deployment: no pod rolls. An adapter
on a claim the pod does not mount yet still rolls once, since the pod needs the volume.

The sidecar also reports what the server holds into ``status.loadedAdapters`` of its InferenceService (a merge
patch of the status subresource, as training pods report progress). Only it gets an API token, through a
projected volume of its own: the vLLM container never sees one.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.inferenceservice import Backend, InferenceService
from kubetune.config.mapping.serve import render_wanted
from kubetune_operator.meta import child_metadata
from kubetune_operator.render import pods

SIDECAR = "adapters"
ADAPTERS_KEY = "adapters.json"
ADAPTERS_DIR = f"{pods.CONFIG_DIR}/adapters"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3600
SIDECAR_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def runtime_adapters(isvc: InferenceService) -> bool:
    """True when the service's named adapters are loaded at run time (vLLM with ``spec.adapters`` set)."""
    return isvc.spec.engine.backend == Backend.VLLM and isvc.spec.adapters is not None


def adapters_config_map_name(name: str) -> str:
    return f"{name}-adapters"


def render_adapters_config_map(parent: dict[str, Any], adapters: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The adapter list the sidecar applies: served name -> in-pod path of each adapter."""
    wanted = {name: pods.pod_path(uri) for name, uri in adapters}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(parent, adapters_config_map_name(parent["metadata"]["name"])),
        "data": {ADAPTERS_KEY: render_wanted(wanted)},
    }


def adapters_volumes(parent: dict[str, Any]) -> list[dict[str, Any]]:
    """The adapter list (whole ConfigMap as a directory: subPath or items would freeze it) and the sidecar's
    API token (projected: short-lived, audience-bound, and mounted in the sidecar only)."""
    token = {"projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_SECONDS}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    ]}}
    return [{"name": "adapters", "configMap": {"name": adapters_config_map_name(parent["metadata"]["name"])}},
            {"name": "adapters-token", **token}]


def adapters_sidecar(parent: dict[str, Any], isvc: InferenceService, image: str, keep: str | None,
                     pull_policy: str | None, api_key_env: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``kubetune adapters sync`` container: reconciles the server against the mounted list, reports status.

    ``keep`` is an adapter name the sidecar never unloads (the adapter that is the served model itself).
    ``api_key_env`` is the server container's key variable, when the endpoint needs one.
    """
    command = ["kubetune", "adapters", "sync", f"{ADAPTERS_DIR}/{ADAPTERS_KEY}",
               "--server", f"http://127.0.0.1:{isvc.spec.port}"]
    if keep:
        command += ["--keep", keep]
    env = pods.plain_env({"PYTHONUNBUFFERED": "1", "KUBETUNE_INFERENCESERVICE": parent["metadata"]["name"],
                          "KUBETUNE_NAMESPACE": parent["metadata"]["namespace"]})
    container: dict[str, Any] = {
        "name": SIDECAR,
        "image": image,
        "command": command,
        "env": env + api_key_env + pods.writable_env(),
        "volumeMounts": [{"name": "adapters", "mountPath": ADAPTERS_DIR, "readOnly": True},
                         {"name": "adapters-token", "mountPath": TOKEN_DIR, "readOnly": True},
                         *({"name": name, "mountPath": path} for name, path in pods.WRITABLE.items())],
        "securityContext": pods.security_context(),
        "resources": SIDECAR_RESOURCES,
    }
    if pull_policy:
        container["imagePullPolicy"] = pull_policy
    return container
