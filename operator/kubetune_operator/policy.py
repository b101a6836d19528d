"""The cluster admin's policy: which images and ServiceAccounts kubetune pods may run with, and which engine flags
a resource may pass. Loaded once from the operator's policy file; checks are pure functions over rendered children.

Safe defaults: only the images the operator is configured with (``--runtime-image``, ``--vllm-image``), only the
default ServiceAccount of each kind, and never an engine flag from
:data:`kubetune.api.inferenceservice.DENIED_ENGINE_FLAGS`. A tenant who may create kubetune resources therefore
gets no more than those pods, whatever the spec says.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from kubetune.api.environment import RESERVED_ENV_NAMES, RESERVED_ENV_PREFIXES
from kubetune.api.inferenceservice import DENIED_ENGINE_FLAGS

IMAGE_NOT_ALLOWED = "ImageNotAllowed"
SERVICE_ACCOUNT_NOT_ALLOWED = "ServiceAccountNotAllowed"
ENGINE_ARG_NOT_ALLOWED = "EngineArgNotAllowed"
REMOTE_CODE_NOT_ALLOWED = "RemoteCodeNotAllowed"
ENV_NOT_ALLOWED = "EnvNotAllowed"
KINDS = ("FineTuneJob", "ModelExport", "InferenceService")


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ImagePolicy(_Model):
    allowed: tuple[str, ...] = Field((), description="Image patterns (fnmatch: * and ?) resources may name in "
                                     "spec.image, besides the operator's configured images.")


class ServiceAccountPolicy(_Model):
    allowed: tuple[str, ...] = Field((), description="ServiceAccount names (fnmatch) resources may name in "
                                     "spec.serviceAccountName; empty: none.")
    defaults: dict[str, str | None] = Field(default_factory=dict, description="ServiceAccount of each kind's pods "
                                            "(FineTuneJob, ModelExport, InferenceService) when the spec names none.")


class Policy(_Model):
    """The policy file's content (YAML, camelCase keys)."""

    images: ImagePolicy = Field(default_factory=ImagePolicy)
    service_accounts: ServiceAccountPolicy = Field(default_factory=ServiceAccountPolicy)
    denied_engine_flags: tuple[str, ...] = Field((), description="More engine flags to deny (without --), added "
                                                 "to the built-in list.")
    allow_trust_remote_code: bool = Field(False, description="Whether training may run model code shipped with a "
                                          "checkpoint (model.trustRemoteCode): that is any code, in an allowed image.")


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file and the field."""


def load_policy(path: str | Path | None) -> Policy:
    """The policy in ``path`` (YAML), or the safe default when no file is given."""
    if path is None:
        return Policy()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        policy = Policy.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot read the operator policy: {exc}") from exc
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"{path}: invalid operator policy: {where}") from exc
    unknown = set(policy.service_accounts.defaults) - set(KINDS)
    if unknown:
        raise PolicyError(f"{path}: serviceAccounts.defaults: unknown kind(s) {sorted(unknown)}; "
                          f"expected {', '.join(KINDS)}")
    return policy


def _pod_specs(obj: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec inside a rendered child (Job, PyTorchJob replicas, Deployment): dicts with containers."""
    if isinstance(obj, dict):
        if isinstance(obj.get("containers"), list):
            yield obj
        for value in obj.values():
            yield from _pod_specs(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _pod_specs(value)


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def check_children(policy: Policy, manifests: list[dict[str, Any]], allowed_images: tuple[str, ...],
                   own_service_accounts: tuple[str, ...]) -> tuple[str, str] | None:
    """(reason, message) for the first pod in ``manifests`` the policy forbids, or None when all are allowed.

    ``allowed_images`` are the operator's own images; ``own_service_accounts`` those the operator itself puts on
    the kind's pods (its default, and for InferenceService the adapters sidecar's identity).
    """
    for manifest in manifests:
        where = f"{manifest['kind']} {manifest['metadata']['name']}"
        for pod in _pod_specs(manifest):
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                image = container.get("image") or ""
                if image not in allowed_images and not _matches(image, policy.images.allowed):
                    return IMAGE_NOT_ALLOWED, (
                        f"spec.image: {image!r} is not allowed by the operator's policy ({where}); allowed: "
                        f"{', '.join([*allowed_images, *policy.images.allowed])}")
            account = pod.get("serviceAccountName")
            if account and account not in own_service_accounts and \
                    not _matches(account, policy.service_accounts.allowed):
                return SERVICE_ACCOUNT_NOT_ALLOWED, (
                    f"spec.serviceAccountName: {account!r} is not allowed by the operator's policy ({where}); "
                    f"allowed: {', '.join(policy.service_accounts.allowed) or 'none (remove the field)'}")
    return None


def check_runtime_config(policy: Policy, config: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when the pods' runtime config would run code shipped with a checkpoint, unless allowed."""
    if config.get("trust_remote_code") and not policy.allow_trust_remote_code:
        return REMOTE_CODE_NOT_ALLOWED, (
            "spec.model.trustRemoteCode (or extraArgs.trust_remote_code): running model code from a checkpoint is "
            "not allowed by the operator's policy (allowTrustRemoteCode)")
    return None


def denied_engine_flag(arg: str, extra: tuple[str, ...] = ()) -> str | None:
    """The denied flag ``arg`` sets, or None. Catches ``--a_b`` (vLLM reads it as ``--a-b``), ``--flag=value``
    and argparse abbreviations (``--trust-remote`` for ``--trust-remote-code``), which the CRD's pattern cannot."""
    if not arg.startswith("--") or len(arg) < 3:
        return None
    name = arg[2:].split("=", 1)[0].split(".", 1)[0].replace("_", "-")
    for flag in (*DENIED_ENGINE_FLAGS, *extra):
        if (flag.endswith("-") and name.startswith(flag)) or name == flag:
            return f"--{flag}"
        if len(name) >= 4 and flag.startswith(name) and not flag.endswith("-"):
            return f"--{flag}"
    return None


def check_engine_args(policy: Policy, args: list[str]) -> tuple[str, str] | None:
    """(reason, message) for the first denied engine flag in ``args``, or None."""
    for index, arg in enumerate(args):
        flag = denied_engine_flag(arg, policy.denied_engine_flags)
        if flag:
            return ENGINE_ARG_NOT_ALLOWED, (
                f"spec.engine.extraArgs[{index}]: {arg!r} sets {flag}, which loads code, changes authentication, "
                "opens files or network endpoints, or overrides what kubetune sets; remove it")
    return None


def check_env(spec: dict[str, Any], manifests: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) when ``spec.env`` names a variable kubetune sets in one of the rendered pods.

    The CRD refuses the fixed names and prefixes; this also catches those stored before the rule existed and the
    ones kubetune sets only for some specs (``HF_TOKEN`` from credentialsSecretRef, ``AWS_*`` from storage.s3).
    """
    for index, name in enumerate(e.get("name", "") for e in spec.get("env") or []):
        reserved = name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES)
        clash = reserved or any(
            sum(1 for e in container.get("env", []) if e.get("name") == name) > 1
            for manifest in manifests for pod in _pod_specs(manifest)
            for container in [*pod.get("initContainers", []), *pod["containers"]])
        if clash:
            return ENV_NOT_ALLOWED, (f"spec.env[{index}]: {name} is set by kubetune for these pods and cannot be "
                                     "replaced; remove it (or use the spec field that sets it)")
    return None
