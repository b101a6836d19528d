"""Typed configuration of `kubetune serve`/`api`/`chat`, with LLaMA-Factory key names.

A flat YAML as LLaMA-Factory's ``inference/*.yaml`` (``model_name_or_path``, ``adapter_name_or_path``,
``template``, ``infer_backend``, ``vllm_*``, generation defaults) validates into :class:`ServeConfig`; an
InferenceService maps onto it (:mod:`kubetune.config.mapping.serve`). Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kubetune.config.base import StrList
from kubetune.config.serve_limits import ServerLimits

IGNORED_KEYS = frozenset({"finetuning_type", "stage", "use_fast_tokenizer", "flash_attn", "low_cpu_mem_usage",
                          "cache_dir", "model_revision", "print_param_status", "use_kv_cache"})
# LLaMA-Factory names -> kubetune names, for keys that mean the same thing.
ALIASES = {"vllm_maxlen": "max_model_len", "vllm_gpu_util": "gpu_memory_utilization",
           "vllm_max_lora_rank": "max_lora_rank", "max_length": "max_model_len"}


class LoraAdapter(BaseModel):
    """A LoRA adapter served under its own model name."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, description="The OpenAI `model` value that selects this adapter.")
    path: str = Field(description="Adapter directory (PEFT layout).")


class ServeConfig(BaseModel):
    """What `kubetune serve` reads; paths are local."""

    model_config = ConfigDict(extra="forbid")

    model_name_or_path: str = Field(description="Model directory or hub id.")
    adapter_name_or_path: StrList = Field(
        default_factory=list, description="LLaMA-Factory style: adapters applied to the served model itself "
        "(merged at load by the hf engine; vllm serves one, unmerged).")
    lora_adapters: list[LoraAdapter] = Field(default_factory=list, description="Named adapters, each a model.")
    template: str | None = Field(None, description="Template name; unset = the tokenizer's chat_template.")
    default_system: str | None = Field(None, description="System prompt used when a request has none.")
    tool_format: str | None = Field(None, description="Tool-call syntax (hermes, mistral, llama3); "
                                    "default: the template's, else hermes.")
    infer_backend: Literal["huggingface", "hf", "vllm"] = Field("huggingface", description="hf or vllm.")
    infer_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="hf engine device.")
    served_model_name: str | None = Field(None, description="The base model's OpenAI name (default: folder name).")
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = Field(None, description="Clients must send it as a Bearer token when set.")
    max_model_len: int | None = Field(None, ge=16, description="Context length (vllm_maxlen).")
    max_batch_size: int = Field(16, ge=1, le=1024, description="hf engine: sequences generated together.")
    threads: int | None = Field(None, ge=1, le=1024, description="hf engine: torch intra-op threads (default: "
                                "from the container's CPU quota and cpuset; see kubetune.serve.threads).")
    do_sample: bool | None = Field(None, description="Default when a request sets no temperature "
                                   "(false = greedy).")
    temperature: float | None = Field(None, ge=0, le=2, description="Default temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Default top_p.")
    top_k: int | None = Field(None, ge=0, description="Default top_k (0 = off).")
    max_new_tokens: int | None = Field(None, ge=1, description="Default max_tokens.")
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="vllm_gpu_util.")
    vllm_enforce_eager: bool = False
    max_lora_rank: int | None = Field(None, ge=1, description="vllm_max_lora_rank.")
    max_loras: int | None = Field(None, ge=1)
    enable_lora: bool | None = Field(None, description="vllm: start with LoRA on and adapters loadable at run "
                                     "time even when none is listed (default: on when there are adapters).")
    vllm_config: dict[str, Any] = Field(default_factory=dict, description="Extra vLLM engine args (--key value).")
    extra_args: list[str] = Field(default_factory=list, description="Extra vLLM command-line arguments.")
    default_adapter: str | None = Field(None, description="Adapter directory that answers to served_model_name "
                                        "(an adapter served on its base).")
    trust_remote_code: bool = False
    image_max_pixels: int = Field(768 * 768, ge=1, description="Vision-language models: larger request images "
                                  "are scaled down to this many pixels (set it as in training).")
    image_min_pixels: int = Field(32 * 32, ge=1, description="Vision-language models: smaller request images "
                                  "are scaled up to this many pixels (set it as in training).")
    limits: ServerLimits = Field(default_factory=ServerLimits, description="What one client may take "
                                 "(body, prompt, sequences, queue, connections, timeouts).")

    @model_validator(mode="before")
    @classmethod
    def _normalise_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = {ALIASES.get(k, k): v for k, v in data.items() if k not in IGNORED_KEYS}
        if isinstance(out.get("lora_adapters"), dict):
            out["lora_adapters"] = [{"name": k, "path": v} for k, v in out["lora_adapters"].items()]
        return out

    @field_validator("vllm_config", mode="before")
    @classmethod
    def _json_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            import json

            return json.loads(value)
        return value or {}

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        names = [a.name for a in self.lora_adapters]
        if len(set(names)) != len(names):
            raise ValueError("lora_adapters: names must be unique")
        if self.model_name in names:
            raise ValueError(f"lora_adapters: {self.model_name!r} is already the served model's name")
        if self.image_min_pixels > self.image_max_pixels:
            raise ValueError(f"image_min_pixels {self.image_min_pixels} exceeds image_max_pixels "
                             f"{self.image_max_pixels}")
        return self

    @property
    def backend(self) -> Literal["hf", "vllm"]:
        return "vllm" if self.infer_backend == "vllm" else "hf"

    @property
    def model_name(self) -> str:
        """The OpenAI name of the served model."""
        return self.served_model_name or Path(self.model_name_or_path.rstrip("/")).name or "model"


def apply_endpoint_overrides(config: ServeConfig, flags: Mapping[str, Any], env: Mapping[str, str]) -> ServeConfig:
    """Host, port, API key and served name from flags, else LLaMA-Factory's API_* variables, else the file.

    ``flags`` holds host/port/api_key/served_model_name (None = not given); ``env`` is the process environment,
    read by the CLI and passed in (never read at import).
    """
    from_env = {"host": env.get("API_HOST"), "port": env.get("API_PORT"), "api_key": env.get("API_KEY"),
                "served_model_name": env.get("API_MODEL_NAME")}
    update = {}
    for key in ("host", "port", "api_key", "served_model_name"):
        value = flags.get(key) if flags.get(key) is not None else from_env[key]
        if value not in (None, ""):
            update[key] = value
    return ServeConfig.model_validate({**config.model_dump(exclude_unset=True), **update})
