"""What a resource adds to its pods' environment (``env``, ``envFrom``) and where its storage is (``storage``).

``env`` and ``envFrom`` carry settings for trackers (``MLFLOW_TRACKING_URI``, ``WANDB_API_KEY`` from a Secret),
a Hub mirror (``HF_ENDPOINT``) and the like. Secrets and ConfigMaps are named, never inlined, and a pod can only
read those of its own namespace. kubetune's own variables cannot be replaced: names in
:data:`RESERVED_ENV_NAMES` or starting with one of :data:`RESERVED_ENV_PREFIXES` are refused by the CRD, and the
operator refuses any other name it sets itself (``HF_TOKEN`` from ``credentialsSecretRef``, the S3 variables from
``storage.s3``); kubetune's entries come after the user's, and an explicit entry wins over ``envFrom``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel

ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
RESERVED_ENV_PREFIXES = ("KUBETUNE_", "PET_")
# Set by the operator on every kubetune container (paths the restricted pods can write, the rendezvous).
RESERVED_ENV_NAMES = ("HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "TRITON_CACHE_DIR",
                      "TORCHINDUCTOR_CACHE_DIR", "VLLM_CACHE_ROOT", "MPLCONFIGDIR", "PYTHONUNBUFFERED",
                      "MASTER_ADDR", "MASTER_PORT")
_NOT_RESERVED = (
    "!(" + " || ".join(f"self.name.startsWith('{p}')" for p in RESERVED_ENV_PREFIXES) + ")"
    + " && !(self.name in [" + ", ".join(f"'{n}'" for n in RESERVED_ENV_NAMES) + "])"
)
_NAME_OF_SECRET = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class KeySelector(KubeModel):
    """A key of a Secret or ConfigMap in the resource's namespace."""

    name: str = Field(max_length=253, pattern=_NAME_OF_SECRET, description="Name of the Secret or ConfigMap.")
    key: str = Field(max_length=253, description="The key to read.")
    optional: bool | None = Field(None, description="Start the pod even when the key is missing.")


class EnvVarSource(KubeModel):
    """Where a variable's value comes from: one key of a Secret or of a ConfigMap."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule("[has(self.secretKeyRef), has(self.configMapKeyRef)].filter(x, x).size() == 1",
                "valueFrom needs exactly one of secretKeyRef or configMapKeyRef"),
    )

    secret_key_ref: KeySelector | None = Field(None, description="A key of a Secret in the same namespace.")
    config_map_key_ref: KeySelector | None = Field(None, description="A key of a ConfigMap in the same namespace.")


class EnvVar(KubeModel):
    """One environment variable of the pods, as core/v1 EnvVar (value or valueFrom)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(_NOT_RESERVED, "this variable is set by kubetune and cannot be replaced (names starting with "
                + " or ".join(RESERVED_ENV_PREFIXES) + ", and " + ", ".join(RESERVED_ENV_NAMES) + ")", ".name"),
        CelRule("!(has(self.value) && has(self.valueFrom))", "set value or valueFrom, not both"),
    )

    name: str = Field(max_length=256, pattern=ENV_NAME_PATTERN, description="Variable name.")
    value: str | None = Field(None, max_length=32768, description="A literal value (never a credential: use "
                              "valueFrom.secretKeyRef).")
    value_from: EnvVarSource | None = Field(None, description="Read the value from a Secret or ConfigMap key.")


class LocalName(KubeModel):
    name: str = Field(max_length=253, pattern=_NAME_OF_SECRET, description="Name in the resource's namespace.")
    optional: bool | None = Field(None, description="Start the pod even when it is missing.")


class EnvFromSource(KubeModel):
    """Every key of a Secret or ConfigMap as variables (core/v1 EnvFromSource). Explicit env entries, and all of
    kubetune's own, take precedence over these."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule("[has(self.secretRef), has(self.configMapRef)].filter(x, x).size() == 1",
                "envFrom entries need exactly one of secretRef or configMapRef"),
    )

    secret_ref: LocalName | None = Field(None, description="A Secret in the same namespace.")
    config_map_ref: LocalName | None = Field(None, description="A ConfigMap in the same namespace.")
    prefix: str | None = Field(None, max_length=128, pattern=ENV_NAME_PATTERN,
                               description="Prepended to every key's name.")


class S3Storage(KubeModel):
    """The S3-compatible endpoint s3:// URIs live on, and the Secret with its credentials."""

    endpoint: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s]+$",
                                 description="Endpoint URL of an S3-compatible server (MinIO, SeaweedFS, Ceph RGW, "
                                 "...); omitted: AWS S3.")
    region: str | None = Field(None, max_length=64, description="Region of the bucket (default us-east-1).")
    credentials_secret_ref: LocalName | None = Field(
        None, description="Secret with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN "
        "optional); omitted: the pod's own identity (for example IRSA/workload identity).")


class StorageSpec(KubeModel):
    """Object storage and the model cache."""

    s3: S3Storage | None = Field(None, description="Where s3:// URIs are read and written.")
    cache_claim: str | None = Field(
        None, max_length=253, pattern=_NAME_OF_SECRET,
        description="A PersistentVolumeClaim holding the Hugging Face cache for hf:// models: a model downloaded "
        "once is reused by later jobs in the namespace (ReadWriteMany for concurrent jobs).")


ENV_FIELD_DESCRIPTION = ("Extra environment variables of the pods (trackers, a Hub mirror via HF_ENDPOINT, ...); "
                         "kubetune's own variables cannot be replaced.")
