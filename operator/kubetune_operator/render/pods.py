"""Pod pieces every workload shares: volumes for pvc:// URIs, /dev/shm, the mounted config, scheduling, resources.

``pvc://claim/path`` is mounted at ``/mnt/pvc/<claim>`` so the runtime's URI rule (kubetune.uris) finds the same
path in the pod as it would under ``--pvc-root`` on a laptop. A claim only read is mounted read-only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubetune.api.common import Scheduling, SecretKeyRef
from kubetune.uris import POD_PVC_ROOT, UriResolver, split_pvc

CONFIG_DIR = "/etc/kubetune"
POD_URIS = UriResolver()  # pvc:// -> /mnt/pvc/<claim>/<path>, file:// -> path, hf:// -> hub id


def pod_path(uri: str) -> str:
    """Where a URI is found inside a kubetune pod (raises kubetune.uris.UriError for s3:// and unknown schemes)."""
    return POD_URIS.resolve(uri)


def claims(inputs: Iterable[str | None], outputs: Iterable[str | None] = ()) -> dict[str, bool]:
    """PVC claim -> read-only, for the pvc:// URIs among ``inputs`` (read) and ``outputs`` (written)."""
    found: dict[str, bool] = {}
    for uri in inputs:
        if uri and uri.startswith("pvc://"):
            found.setdefault(split_pvc(uri)[0], True)
    for uri in outputs:
        if uri and uri.startswith("pvc://"):
            found[split_pvc(uri)[0]] = False
    return dict(sorted(found.items()))


def volumes_and_mounts(config_map: str | None, config_key: str | None, pvc_claims: dict[str, bool],
                       shm_size: int | str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and matching mounts: the config file, each claim, and a memory-backed /dev/shm."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if config_map and config_key:
        volumes.append({"name": "config", "configMap": {"name": config_map, "items": [{"key": config_key,
                                                                                       "path": config_key}]}})
        mounts.append({"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})
    for index, (claim, read_only) in enumerate(pvc_claims.items()):
        name = f"pvc-{index}"
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        mounts.append({"name": name, "mountPath": f"{POD_PVC_ROOT}/{claim}", "readOnly": read_only})
    shm: dict[str, Any] = {"medium": "Memory"}
    if shm_size is not None:
        shm["sizeLimit"] = shm_size
    volumes.append({"name": "dshm", "emptyDir": shm})
    mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def scheduling(spec: Scheduling) -> dict[str, Any]:
    """nodeSelector, tolerations, affinity and priorityClassName for a pod spec (only those set)."""
    out: dict[str, Any] = {}
    if spec.node_selector:
        out["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        out["tolerations"] = [t.wire() for t in spec.tolerations]
    if spec.affinity:
        out["affinity"] = spec.affinity
    if spec.priority_class_name:
        out["priorityClassName"] = spec.priority_class_name
    return out


def finish_container(container: dict[str, Any], pull_policy: str | None, requests: dict[str, Any] | None,
                     limits: dict[str, Any] | None, gpus: int, gpu_resource_name: str) -> dict[str, Any]:
    """Add the optional pull policy and resources every kubetune container gets; returns the container."""
    if pull_policy:
        container["imagePullPolicy"] = pull_policy
    res = resources(requests, limits, gpus, gpu_resource_name)
    if res:
        container["resources"] = res
    return container


def resources(requests: dict[str, Any] | None, limits: dict[str, Any] | None, gpus: int,
              gpu_resource_name: str) -> dict[str, Any]:
    """Container resources; GPUs are an extended resource, so they go in limits (and requests, equal)."""
    req = dict(requests or {})
    lim = dict(limits or {})
    if gpus > 0:
        req[gpu_resource_name] = gpus
        lim[gpu_resource_name] = gpus
    out: dict[str, Any] = {}
    if req:
        out["requests"] = req
    if lim:
        out["limits"] = lim
    return out


def secret_env(name: str, ref: SecretKeyRef | None) -> list[dict[str, Any]]:
    """An env var read from a Secret by the kubelet: the operator itself never reads Secrets."""
    if ref is None:
        return []
    return [{"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]


def plain_env(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def security_context() -> dict[str, Any]:
    """What every kubetune container may drop without losing a feature."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
