"""Pod pieces every workload shares: volumes for pvc:// URIs, /dev/shm, the mounted config, scheduling, resources.

``pvc://claim/path`` is mounted at ``/mnt/pvc/<claim>`` so the runtime's URI rule (kubetune.uris) finds the same
path in the pod as it would under ``--pvc-root`` on a laptop. A claim only read is mounted read-only.

Every pod meets the ``restricted`` Pod Security Standard: a non-root uid, the runtime's default seccomp profile, no
privilege escalation, no capabilities. A non-root user can write almost nowhere in an image, so HOME and /tmp are
emptyDirs and the caches (Hugging Face, Triton, torch compile, vLLM) point into them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubetune.api.common import Scheduling, SecretKeyRef
from kubetune.uris import POD_PVC_ROOT, UriResolver, contained, split_pvc

CONFIG_DIR = "/etc/kubetune"
HOME = "/home/kubetune"
CACHE = f"{HOME}/.cache"
WRITABLE = {"tmp": "/tmp", "home": HOME}  # emptyDir volume name -> mount path
POD_URIS = UriResolver()  # pvc:// -> /mnt/pvc/<claim>/<path>, s3:// -> /mnt/s3/<bucket>/<key>, hf:// -> hub id


def pod_path(uri: str) -> str:
    """Where a URI is found inside a kubetune pod: s3:// in the staged mirror under /mnt/s3 (raises
    kubetune.uris.UriError for unknown schemes and URIs that would escape their claim or bucket)."""
    return POD_URIS.resolve(contained(uri))


def claims(inputs: Iterable[str | None], outputs: Iterable[str | None] = ()) -> dict[str, bool]:
    """PVC claim -> read-only, for the pvc:// URIs among ``inputs`` (read) and ``outputs`` (written)."""
    found: dict[str, bool] = {}
    for uri in inputs:
        if uri and uri.startswith("pvc://"):
            found.setdefault(split_pvc(contained(uri))[0], True)
    for uri in outputs:
        if uri and uri.startswith("pvc://"):
            found[split_pvc(contained(uri))[0]] = False
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
    for name, path in WRITABLE.items():
        volumes.append({"name": name, "emptyDir": {}})
        mounts.append({"name": name, "mountPath": path})
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
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


def pod_security_context(uid: int) -> dict[str, Any]:
    """The pod-level half of the restricted profile. ``fsGroup`` makes the claims writable by ``uid``'s group;
    OnRootMismatch skips the recursive ownership change when the volume's root already matches."""
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}


# HOME and every cache the runtime, transformers, triton, torch compile and vLLM write, inside the emptyDirs.
WRITABLE_ENV = {
    "HOME": HOME,
    "XDG_CACHE_HOME": CACHE,
    "HF_HOME": f"{CACHE}/huggingface",
    "TRITON_CACHE_DIR": f"{CACHE}/triton",
    "TORCHINDUCTOR_CACHE_DIR": f"{CACHE}/torchinductor",
    "VLLM_CACHE_ROOT": f"{CACHE}/vllm",
    "MPLCONFIGDIR": f"{HOME}/.config/matplotlib",
}


def writable_env() -> list[dict[str, Any]]:
    """WRITABLE_ENV as container env entries."""
    return plain_env(WRITABLE_ENV)
