"""Typed configuration of `kubetune export`, with LLaMA-Factory's export key names.

A flat YAML such as LLaMA-Factory's ``merge_lora/llama3_lora_sft.yaml`` (``model_name_or_path``,
``adapter_name_or_path``, ``template``, ``export_dir``, ``export_size``, ...) validates into :class:`ExportConfig`.
A ModelExport custom resource maps onto the same model (:mod:`kubetune.config.mapping.export`). Torch-free.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kubetune.config.base import StrList

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
