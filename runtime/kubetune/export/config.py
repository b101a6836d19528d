"""Typed configuration of `kubetune export`, with LLaMA-Factory's export key names, and the ModelExport mapping.

A flat YAML such as LLaMA-Factory's ``merge_lora/llama3_lora_sft.yaml`` (``model_name_or_path``,
``adapter_name_or_path``, ``template``, ``export_dir``, ``export_size``, ...) validates into :class:`ExportConfig`.
A ModelExport custom resource maps onto the same model with :func:`export_config_from_modelexport` once its
sources are local paths. This module is torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kubetune.api.modelexport import ModelExport, QuantMethod
from kubetune.config.base import StrList
from kubetune.names import subdomain_problem
from kubetune.uris import UriError, UriResolver

# Keys LLaMA-Factory export YAMLs usually carry that change nothing here (the merge does not depend on them).
IGNORED_KEYS = frozenset({
    "finetuning_type", "stage", "use_fast_tokenizer", "flash_attn", "low_cpu_mem_usage", "print_param_status",
    "cache_dir", "model_revision", "do_sample", "temperature", "top_p", "top_k", "max_new_tokens",
})

Dtype = Literal["auto", "float32", "float16", "bfloat16"]


class ExportConfig(BaseModel):
    """What `kubetune export` reads. Paths are local (URIs are resolved before this model is built)."""

    model_config = ConfigDict(extra="forbid")

    model_name_or_path: str = Field(description="The unquantized base model (local directory or hub id).")
    adapter_name_or_path: StrList = Field(
        default_factory=list, description="LoRA adapters merged into the base in order (comma list accepted)."
    )
    template: str | None = Field(None, description="Chat template name; its stop tokens go into generation_config.")
    export_dir: str = Field(description="Output directory; must be new or empty unless overwrite is set.")
    export_size: int = Field(5, ge=1, le=1000, description="Largest shard in GB (max_shard_size).")
    max_shard_size: str | None = Field(None, description="Largest shard as a size string ('500MB'); wins over "
                                       "export_size.")
    export_device: Literal["cpu", "auto"] = Field("cpu", description="Device used while merging.")
    infer_dtype: Dtype = Field("auto", description="Weight dtype written; auto keeps the base's dtype.")
    merge: bool = Field(True, description="Merge adapters (false: re-save or quantize the base alone).")
    export_quantization_bit: Literal[2, 3, 4, 8] | None = Field(None, description="Quantize to this many bits.")
    export_quantization_method: Literal["gptq", "awq", "bnb"] = Field(
        "gptq", description="gptq (LLaMA-Factory's only method), awq or bnb."
    )
    export_quantization_dataset: str | None = Field(None, description="Calibration file (json/jsonl/txt).")
    export_quantization_nsamples: int = Field(128, ge=1, description="Calibration samples.")
    export_quantization_maxlen: int = Field(1024, ge=16, description="Tokens per calibration sample.")
    export_quantization_group_size: int = Field(128, ge=-1, description="Quantization group size (-1: channel).")
    export_legacy_format: bool = Field(False, description="Accepted for compatibility; safetensors are always "
                                       "written (transformers 5 saves no .bin).")
    export_hub_model_id: str | None = Field(None, description="Not supported: upload the directory yourself.")
    trust_remote_code: bool = False
    overwrite: bool = Field(False, description="Allow writing into a non-empty export_dir.")
    base_model_uri: str | None = Field(None, description="Base model URI recorded in the manifest "
                                       "(defaults to model_name_or_path).")

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if k not in IGNORED_KEYS} if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _check(self) -> ExportConfig:
        if self.export_hub_model_id:
            raise ValueError("export_hub_model_id: pushing to a hub is not supported; upload export_dir yourself")
        quantized = self.export_quantization_bit is not None
        if quantized and self.export_quantization_method in ("gptq", "awq") and not self.export_quantization_dataset:
            raise ValueError(f"export_quantization_dataset is required for {self.export_quantization_method}: "
                             "a json/jsonl/txt file of calibration texts")
        if quantized and self.export_quantization_method == "bnb" and self.export_quantization_bit not in (4, 8):
            raise ValueError("bnb quantizes to 4 or 8 bits (export_quantization_bit)")
        if quantized and self.export_quantization_method == "awq" and self.export_quantization_bit != 4:
            raise ValueError("awq quantizes to 4 bits (export_quantization_bit)")
        if self.adapter_name_or_path and not self.merge:
            raise ValueError("adapters are given but merge is false: quantization needs the adapters merged first")
        return self

    @property
    def shard_size(self) -> str:
        return self.max_shard_size or f"{self.export_size}GB"

    @property
    def quantization(self) -> tuple[str, int] | None:
        """(method, bits) when the export is quantized."""
        if self.export_quantization_bit is None:
            return None
        return self.export_quantization_method, self.export_quantization_bit


def export_config_from_modelexport(mexp: ModelExport, *, base_model: str, adapters: list[str], export_dir: str,
                                   calibration: str | None = None, base_model_uri: str | None = None
                                   ) -> ExportConfig:
    """Map a ModelExport whose sources are already resolved to local paths onto :class:`ExportConfig`.

    The local runner resolves ``fineTuneJobRef``/``modelExportRef`` sources itself and calls this; uri sources
    go through :func:`resolve_modelexport`.
    """
    spec = mexp.spec
    fields: dict[str, Any] = {
        "model_name_or_path": base_model,
        "adapter_name_or_path": adapters,
        "export_dir": export_dir,
        "infer_dtype": str(spec.dtype),
        "merge": spec.merge,
        "max_shard_size": spec.max_shard_size,
        "base_model_uri": base_model_uri,
    }
    quant = spec.quantization
    if quant is not None and quant.method != QuantMethod.NONE:
        fields.update(export_quantization_bit=quant.bits, export_quantization_method=str(quant.method),
                      export_quantization_group_size=quant.group_size, export_quantization_dataset=calibration)
        if quant.calibration is not None:
            fields.update(export_quantization_nsamples=quant.calibration.samples,
                          export_quantization_maxlen=quant.calibration.max_length)
    return ExportConfig.model_validate(fields)


def output_dir_name(mexp: ModelExport) -> str:
    """``<name>-<uid8>``, the directory the export writes under ``spec.output.uri`` (``<name>`` without a uid)."""
    name = str(mexp.metadata.get("name") or "export")
    uid = str(mexp.metadata.get("uid") or "").replace("-", "")
    # The name becomes a folder: outside a cluster nobody else has checked it.
    if (problem := subdomain_problem(name)) is not None:
        raise UriError(f"metadata.name: {problem}")
    if uid and not (uid.isascii() and uid.isalnum()):
        raise UriError(f"metadata.uid: {mexp.metadata.get('uid')!r} is not a UID (letters, digits and '-')")
    return f"{name}-{uid[:8]}" if uid else name


def resolve_modelexport(mexp: ModelExport, resolver: UriResolver) -> ExportConfig:
    """Build the export config of a ModelExport whose source is given by URIs.

    Raises UriError for references to other objects: those need the local runner (`kubetune run`) or the
    operator, which know where the referenced object's output is.
    """
    source = mexp.spec.source
    if source.fine_tune_job_ref or source.model_export_ref:
        ref = source.fine_tune_job_ref or source.model_export_ref
        raise UriError(f"spec.source references {ref.name if ref else '?'}: run the referenced object first and "
                       "export with `kubetune run` (it resolves references), or give spec.source.model.uri")
    if source.model is None:
        raise UriError("spec.source.model.uri is required when exporting by URI")
    calibration = None
    quant = mexp.spec.quantization
    if quant is not None and quant.calibration is not None:
        calibration = resolver.resolve(quant.calibration.uri)
    export_dir = resolver.resolve(resolver.join(mexp.spec.output.uri, output_dir_name(mexp)))
    return export_config_from_modelexport(
        mexp,
        base_model=resolver.resolve(source.model.uri),
        adapters=[resolver.resolve(source.adapter.uri)] if source.adapter else [],
        export_dir=export_dir,
        calibration=calibration,
        base_model_uri=source.model.uri,
    )


def default_resolver(config_file: str | Path, pvc_root: str | None = None) -> UriResolver:
    """Resolver for a CR file run directly: relative paths against the file's folder."""
    base = Path(config_file).resolve().parent
    return UriResolver(pvc_root=Path(pvc_root) if pvc_root else UriResolver().pvc_root, base_dir=base)
