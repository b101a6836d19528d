"""ModelExport: merge LoRA adapters into their base and optionally quantize, as a one-shot Job."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.common import (
    ArtifactStatus,
    ChildRef,
    LocalObjectRef,
    ObjectStatus,
    OutputSpec,
    Quantity,
    Scheduling,
    SecretKeyRef,
    Uri,
)
from kubetune.api.conditions import ModelExportPhase
from kubetune.api.evaluation import MinScore


class ExportDtype(StrEnum):
    AUTO = "auto"
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class QuantMethod(StrEnum):
    NONE = "none"
    GPTQ = "gptq"
    AWQ = "awq"
    BNB = "bnb"


class UriSource(KubeModel):
    """A location given by URI."""

    uri: Uri
    revision: str | None = Field(None, max_length=256, description="Revision for hf:// sources.")
    credentials_secret_ref: SecretKeyRef | None = Field(None, description="Secret with credentials for the source.")


class ExportSource(KubeModel):
    """What to export: a FineTuneJob's or ModelExport's output, or an adapter and its base given by URI."""

    fine_tune_job_ref: LocalObjectRef | None = Field(None, description="Export this FineTuneJob's output.")
    model_export_ref: LocalObjectRef | None = Field(None, description="Re-export this ModelExport's output.")
    adapter: UriSource | None = Field(None, description="A LoRA adapter (PEFT layout) to merge into model.")
    model: UriSource | None = Field(
        None,
        description="The base model. With a fineTuneJobRef it overrides the recorded base, e.g. a bf16 base "
        "after qlora.",
    )
    min_score: float | None = MinScore

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "[has(self.fineTuneJobRef), has(self.modelExportRef), has(self.adapter) || has(self.model)]"
            ".filter(x, x).size() == 1 || (has(self.fineTuneJobRef) && has(self.model) && !has(self.adapter) "
            "&& !has(self.modelExportRef))",
            "set one source: fineTuneJobRef (optionally with model as base override), modelExportRef, "
            "or model (with an optional adapter)",
        ),
        CelRule("!has(self.adapter) || has(self.model)", "adapter needs model: the base it was trained on",
                ".model"),
        CelRule("!has(self.minScore) || has(self.fineTuneJobRef)",
                "minScore gates a fineTuneJobRef source: it compares that FineTuneJob's status.evaluation.score",
                ".minScore"),
    )


class Calibration(KubeModel):
    """Calibration data for GPTQ and AWQ."""

    uri: Uri = Field(description="Text or chat dataset used to calibrate the quantizer.")
    samples: int = Field(128, ge=1, le=100000, description="Number of calibration samples.")
    max_length: int = Field(1024, ge=16, le=1048576, description="Tokens per calibration sample.")


class ExportQuantization(KubeModel):
    """Post-training quantization of the exported model."""

    method: QuantMethod = Field(QuantMethod.NONE, description="none, gptq, awq or bnb.")
    bits: Literal[2, 3, 4, 8] = Field(4, description="Bits per weight.")
    group_size: int = Field(128, ge=-1, le=4096, description="Quantization group size (-1: per channel).")
    calibration: Calibration | None = Field(None, description="Calibration data (gptq and awq).")

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule("!(self.method in ['gptq', 'awq']) || has(self.calibration)",
                "gptq and awq need calibration data: set quantization.calibration.uri", ".calibration"),
        CelRule("self.method != 'bnb' || self.bits in [4, 8]", "bnb quantizes to 4 or 8 bits", ".bits"),
        CelRule("self.method != 'awq' || self.bits == 4", "awq quantizes to 4 bits", ".bits"),
    )


class ExportResources(KubeModel):
    """Resources of the export Job."""

    gpus: int = Field(0, ge=0, le=64, description="GPUs for the export pod (quantization needs one).")
    gpu_resource_name: str = Field("nvidia.com/gpu", max_length=253, description="Extended resource of a GPU.")
    requests: dict[str, Quantity] | None = Field(None, max_length=16, description="Container resource requests.")
    limits: dict[str, Quantity] | None = Field(None, max_length=16, description="Container resource limits.")


class ModelExportSpec(Scheduling):
    """What to export and how."""

    source: ExportSource = Field(description="The adapter or model to export.")
    merge: bool = Field(True, description="Merge LoRA adapters into the unquantized base.")
    dtype: ExportDtype = Field(ExportDtype.BFLOAT16, description="Weight dtype of the exported model.")
    quantization: ExportQuantization | None = Field(None, description="Quantize after merging.")
    max_shard_size: str = Field("5GB", max_length=16, description="Largest safetensors shard.")
    output: OutputSpec = Field(description="Where the exported model is written.")
    resources: ExportResources = Field(default_factory=ExportResources, description="Resources of the Job.")
    backoff_limit: int = Field(2, ge=0, le=100, description="Retries of the export Job.")

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!has(self.source.adapter) || self.merge || has(self.quantization)",
            "an adapter source with merge: false and no quantization has nothing to export",
            ".merge",
        ),
    )


class ResolvedSource(KubeModel):
    """The concrete input the export used."""

    fine_tune_job: str | None = Field(None, max_length=253, description="FineTuneJob the source came from.")
    model_export: str | None = Field(None, max_length=253, description="ModelExport the source came from.")
    uri: str | None = Field(None, max_length=2048, description="Resolved artifact directory.")
    base_model_uri: str | None = Field(None, max_length=2048, description="Resolved base model.")


class ModelExportStatus(ObjectStatus):
    """Observed state of a ModelExport."""

    phase: ModelExportPhase | None = Field(
        None, description="Pending, WaitingForSource, Running, Succeeded or Failed."
    )
    resolved_source: ResolvedSource | None = Field(None, description="What the export read.")
    job: ChildRef | None = Field(None, description="The export Job.")
    output: ArtifactStatus | None = Field(None, description="The exported artifact.")


class ModelExport(KubeModel):
    """An export: the operator runs `kubetune export` in a Job once the source has succeeded."""

    api_version: str = Field("kubetune.io/v1alpha1", description="kubetune.io/v1alpha1")
    kind: str = Field("ModelExport", description="ModelExport")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: ModelExportSpec = Field(description="Desired export; immutable.")
    status: ModelExportStatus | None = Field(None, description="Observed state, written by the operator.")
