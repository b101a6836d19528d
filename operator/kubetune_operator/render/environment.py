"""What a rendered pod gets from ``spec.env``, ``spec.envFrom`` and ``spec.storage``: pure edits of a pod spec.

- ``env``/``envFrom``: the user's entries come first and kubetune's after them (a later duplicate wins in the
  kubelet); the operator's policy (kubetune_operator.policy.check_env) refuses a user name kubetune also sets.
- ``storage.s3``: ``AWS_ENDPOINT_URL_S3``/``AWS_REGION`` and the keys of the credentials Secret, on every container
  that stages. s3:// inputs are downloaded by an init container (``kubetune stage --in ...``) into the emptyDir
  mirror at /mnt/s3 (kubetune.uris.POD_S3_ROOT); an s3:// output is uploaded by wrapping the main command in
  ``kubetune stage --out URI --``, after it succeeded, the artifact manifest last.
- ``storage.cacheClaim``: the claim is the Hugging Face hub cache (``HF_HUB_CACHE``), so a model one job
  downloaded is there for the next job in the namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubetune.api.common import Scheduling
from kubetune.uris import POD_S3_ROOT, s3_uris

S3_VOLUME = "s3-mirror"
HUB_CACHE_VOLUME = "hub-cache"
HUB_CACHE_DIR = "/mnt/hub-cache"
STAGE_CONTAINER = "stage-inputs"
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": False, "AWS_SECRET_ACCESS_KEY": False, "AWS_SESSION_TOKEN": True}


def user_env(spec: Scheduling) -> list[dict[str, Any]]:
    return [e.wire() for e in spec.env or []]


def s3_env(spec: Scheduling) -> list[dict[str, Any]]:
    """The variables botocore reads, from spec.storage.s3 (nothing when it is not set)."""
    s3 = spec.storage.s3 if spec.storage else None
    if s3 is None:
        return []
    env: list[dict[str, Any]] = []
    if s3.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": s3.endpoint})
    if s3.region:
        env.append({"name": "AWS_REGION", "value": s3.region})
    if s3.credentials_secret_ref:
        secret = s3.credentials_secret_ref.name
        env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key,
                                                              **({"optional": True} if optional else {})}}}
                for key, optional in S3_SECRET_KEYS.items()]
    return env


def hub_cache_env(spec: Scheduling) -> list[dict[str, Any]]:
    if not (spec.storage and spec.storage.cache_claim):
        return []
    return [{"name": "HF_HUB_CACHE", "value": HUB_CACHE_DIR}]


def _add_volume(pod_spec: dict[str, Any], volume: dict[str, Any]) -> None:
    if all(v["name"] != volume["name"] for v in pod_spec.setdefault("volumes", [])):
        pod_spec["volumes"].append(volume)


def finish_pod(pod_spec: dict[str, Any], spec: Scheduling, *, main: str, stage_image: str,
               read: Iterable[str | None] = (), output: str | None = None) -> dict[str, Any]:
    """Add env, envFrom, the hub cache and s3:// staging to ``pod_spec`` (its container ``main`` runs the work;
    the init container that downloads inputs runs ``stage_image``, the runtime image, which has kubetune).

    Every kubetune container gets the user's env and envFrom; kubetune's own entries stay after them.
    Returns ``pod_spec``.
    """
    inputs = s3_uris(read)
    outputs = s3_uris([output])
    extra = [*s3_env(spec), *hub_cache_env(spec)]
    mounts: list[dict[str, Any]] = []
    if spec.storage and spec.storage.cache_claim:
        _add_volume(pod_spec, {"name": HUB_CACHE_VOLUME,
                               "persistentVolumeClaim": {"claimName": spec.storage.cache_claim}})
        mounts.append({"name": HUB_CACHE_VOLUME, "mountPath": HUB_CACHE_DIR})
    if inputs or outputs:
        _add_volume(pod_spec, {"name": S3_VOLUME, "emptyDir": {}})
        mounts.append({"name": S3_VOLUME, "mountPath": POD_S3_ROOT})
    containers = pod_spec["containers"]
    for container in containers:
        container["env"] = [*user_env(spec), *container.get("env", []), *extra]
        if spec.env_from:
            container["envFrom"] = [e.wire() for e in spec.env_from]
        container["volumeMounts"] = [*container.get("volumeMounts", []), *mounts]
    work = next(c for c in containers if c["name"] == main)
    if outputs:
        work["command"] = ["kubetune", "stage", "--out", outputs[0], "--", *work["command"]]
    if inputs:
        stage = {key: value for key, value in work.items() if key in ("image", "imagePullPolicy", "env", "envFrom",
                                                                       "volumeMounts", "securityContext")}
        stage.update(name=STAGE_CONTAINER, image=stage_image,
                     command=["kubetune", "stage", *(arg for uri in inputs for arg in ("--in", uri))])
        pod_spec["initContainers"] = [stage, *pod_spec.get("initContainers", [])]
    return pod_spec
