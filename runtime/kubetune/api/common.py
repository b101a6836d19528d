"""Types shared by the three kinds: sources, secret references, scheduling, conditions, artifacts."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.environment import ENV_FIELD_DESCRIPTION, EnvFromSource, EnvVar, StorageSpec

# A path segment that is not "." or ".." (empty segments allowed: trailing and double slashes are harmless).
_NAME = r"([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)"
_SEGMENT = rf"{_NAME}?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
# pvc:// names a claim (a DNS-1123 subdomain) and a path inside it that never climbs out of it; hf:// and s3://
# paths have no ".." either. file:// is for local runs, where relative paths are resolved and contained by the
# runtime.
URI_PATTERN = (
    rf"^(pvc://{_DNS_SUBDOMAIN}(/{_SEGMENT})*|(hf|s3)://{_NAME}(/{_SEGMENT})*|file://.+)$"
)
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Uri = Annotated[
    str,
    Field(
        pattern=URI_PATTERN,
        max_length=2048,
        description="hf://org/name, pvc://claim/path, s3://bucket/path or file:///abs/path (local runs); pvc:// "
        "claims are DNS-1123 names and no path segment may be '.' or '..'.",
    ),
]
Quantity = Annotated[
    int | str,
    Field(
        description="A Kubernetes quantity such as 8, 500m or 64Gi.",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    ),
]

ONE_SOURCE = (
    "[has(self.uri), has(self.fineTuneJobRef), has(self.modelExportRef)].filter(x, x).size() == 1"
)


class LocalObjectRef(KubeModel):
    """A reference to another kubetune object in the same namespace."""

    name: str = Field(max_length=253, pattern=NAME_PATTERN, description="Name of the referenced object.")


class SecretKeyRef(KubeModel):
    """A key of a Secret in the same namespace. Credentials are only ever read from Secrets."""

    name: str = Field(max_length=253, pattern=NAME_PATTERN, description="Name of the Secret.")
    key: str = Field("token", max_length=253, description="Key within the Secret.")


class ModelSource(KubeModel):
    """Where a model comes from: exactly one of a URI or a reference to a FineTuneJob or ModelExport."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(ONE_SOURCE, "exactly one of uri, fineTuneJobRef or modelExportRef must be set"),
        CelRule(
            "!has(self.revision) || has(self.uri)",
            "revision applies only to a uri source",
            ".revision",
        ),
    )

    uri: Uri | None = None
    fine_tune_job_ref: LocalObjectRef | None = Field(
        None, description="Use the output of this FineTuneJob (it must have succeeded)."
    )
    model_export_ref: LocalObjectRef | None = Field(
        None, description="Use the output of this ModelExport (it must have succeeded)."
    )
    revision: str | None = Field(
        None, max_length=256, description="Branch, tag or commit for hf:// sources; pin it for reproducible runs."
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret holding the token used to fetch the model (for example a Hugging Face token)."
    )


class OutputSpec(KubeModel):
    """Where the producer writes. The operator appends <name>-<uid8>/, so outputs are never overwritten."""

    uri: Uri = Field(description="Parent location of the output directory (pvc://, s3:// or file://).")
    credentials_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret with credentials for the output location, when it needs them."
    )


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class Toleration(KubeModel):
    """A core/v1 Toleration, copied onto the pods."""

    key: str | None = Field(None, max_length=316, description="Taint key the toleration applies to.")
    operator: TolerationOperator | None = Field(None, description="Exists or Equal (default Equal).")
    value: str | None = Field(None, max_length=256, description="Taint value to match with operator Equal.")
    effect: str | None = Field(
        None, max_length=32, description="NoSchedule, PreferNoSchedule or NoExecute; empty matches all."
    )
    toleration_seconds: int | None = Field(None, description="How long a NoExecute taint is tolerated.")


class Scheduling(KubeModel):
    """Pod fields shared by all three kinds (placement, environment, storage); copied onto every pod the object
    creates."""

    node_selector: dict[str, Annotated[str, Field(max_length=256)]] | None = Field(
        None, description="Node labels the pods must match.", max_length=32
    )
    tolerations: list[Toleration] | None = Field(
        None, max_length=32, description="Tolerations for tainted (for example GPU) nodes."
    )
    affinity: dict[str, Any] | None = Field(
        None,
        description="A core/v1 Affinity, passed to the pod spec unchanged.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    priority_class_name: str | None = Field(None, max_length=253, description="PriorityClass of the pods.")
    queue_name: str | None = Field(
        None, max_length=253, description="Kueue LocalQueue; becomes the kueue.x-k8s.io/queue-name label."
    )
    shm_size: Quantity | None = Field(
        None, description="Size of the memory-backed /dev/shm (needed by NCCL and data loaders), e.g. 16Gi."
    )
    image: str | None = Field(
        None, max_length=512, description="Container image override; defaults to the operator's configured image."
    )
    service_account_name: str | None = Field(
        None, max_length=253, description="ServiceAccount of the pods; defaults to the operator's runtime account."
    )
    env: list[EnvVar] | None = Field(
        None, max_length=64, description=ENV_FIELD_DESCRIPTION,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] | None = Field(
        None, max_length=16, description="Secrets and ConfigMaps whose keys become variables of the pods (same "
        "namespace); explicit env and kubetune's own variables take precedence.")
    storage: StorageSpec | None = Field(None, description="Object storage (s3://) settings and the model cache.")


class Condition(KubeModel):
    """A metav1.Condition."""

    type: str = Field(max_length=316, description="Condition type, e.g. Accepted, Running, Succeeded, Ready.")
    status: str = Field(pattern=r"^(True|False|Unknown)$", description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", description="CamelCase reason."
    )
    message: str = Field("", max_length=32768, description="Human-readable details.")
    last_transition_time: str = Field(
        description="When the status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(None, ge=0, description="The generation this condition was set for.")


CONDITIONS_FIELD: Any = Field(
    default_factory=list,
    max_length=16,
    description="metav1 conditions, one per type.",
    json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
)


class ArtifactType(StrEnum):
    LORA_ADAPTER = "lora-adapter"
    FULL_MODEL = "full-model"


class BaseModelRef(KubeModel):
    """The base model an artifact was trained from."""

    uri: str | None = Field(None, max_length=2048, description="URI of the base model.")
    revision: str | None = Field(None, max_length=256, description="Revision of the base model.")


class QuantizationInfo(KubeModel):
    """How an artifact is quantized."""

    method: str = Field(max_length=32, description="none, gptq, awq, bnb or nf4/fp4 for QLoRA bases.")
    bits: int | None = Field(None, ge=2, le=16, description="Bits per weight.")


class ArtifactStatus(KubeModel):
    """What a producer wrote: the directory holding kubetune-artifact.json."""

    uri: str = Field(max_length=2048, description="The concrete output directory.")
    artifact_type: ArtifactType | None = Field(None, description="lora-adapter or full-model.")
    base_model: BaseModelRef | None = Field(None, description="The base model the artifact belongs to.")
    quantization: QuantizationInfo | None = Field(None, description="Quantization of the artifact, if any.")


class ObjectStatus(KubeModel):
    """Fields every status carries."""

    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = CONDITIONS_FIELD
    reason: str | None = Field(
        None, max_length=1024, description="Reason of the condition that best explains the phase."
    )
    message: str | None = Field(None, max_length=32768, description="Message that goes with reason.")


class ChildRef(KubeModel):
    """A child object the operator created."""

    api_version: str | None = Field(None, max_length=253, description="apiVersion of the child.")
    kind: str = Field(max_length=63, description="Kind of the child, e.g. PyTorchJob, Job, Deployment.")
    name: str = Field(max_length=253, description="Name of the child.")
