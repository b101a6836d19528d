"""Model loading, inference-engine and generation keys (LLaMA-Factory ModelArguments / GeneratingArguments)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kubetune.config.base import ConfigGroup, StrList


class ModelConfig(ConfigGroup):
    """Which model to load and how. ``model_name_or_path`` is a local path or a hub id; it is not opened here."""

    model_name_or_path: str = Field(min_length=1, description="Local model directory or hub id.")
    adapter_name_or_path: StrList | None = Field(None, description="Adapters to load (comma list); merged in order.")
    adapter_folder: str | None = Field(None, description="Sub-folder holding the adapter weights.")
    cache_dir: str | None = Field(None, description="Download cache directory.")
    model_revision: str = Field("main", description="Branch, tag or commit of a hub model.")
    use_fast_tokenizer: bool = Field(True, description="Use the tokenizers-backed fast tokenizer.")
    split_special_tokens: bool = Field(False, description="Split special tokens when tokenizing text.")
    resize_vocab: bool = Field(False, description="Resize the embeddings to the tokenizer's vocabulary.")
    add_tokens: StrList | None = Field(None, description="Extra ordinary tokens to add (comma list).")
    add_special_tokens: StrList | None = Field(None, description="Extra special tokens to add (comma list).")
    low_cpu_mem_usage: bool = Field(True, description="Load weights without a full extra copy in memory.")
    rope_scaling: Literal["linear", "dynamic", "yarn", "llama3"] | None = Field(None, description="RoPE scaling.")
    flash_attn: Literal["auto", "disabled", "sdpa", "fa2", "fa3"] = Field(
        "auto", description="Attention implementation: auto, disabled (eager), sdpa, fa2 or fa3."
    )
    enable_liger_kernel: bool = Field(False, description="Use Liger fused kernels where the model supports them.")
    moe_aux_loss_coef: float | None = Field(None, ge=0.0, description="MoE router auxiliary loss coefficient.")
    use_reentrant_gc: bool = Field(True, description="Reentrant gradient checkpointing.")
    upcast_layernorm: bool = Field(False, description="Keep layer norms in fp32 (helps QLoRA).")
    upcast_lmhead_output: bool = Field(False, description="Compute the output head in fp32.")
    train_from_scratch: bool = Field(False, description="Random initialisation instead of the checkpoint weights.")
    trust_remote_code: bool = Field(False, description="Allow model code shipped with the checkpoint to run.")
    # Inference (chat, serve, PPO rollouts).
    infer_backend: Literal["huggingface", "vllm"] = Field("huggingface", description="Generation engine.")
    infer_dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field("auto", description="Inference dtype.")
    use_kv_cache: bool = Field(True, description="Use the KV cache when generating.")
    vllm_maxlen: int = Field(4096, ge=1, description="vLLM max_model_len.")
    vllm_gpu_util: float = Field(0.7, gt=0.0, le=1.0, description="vLLM gpu_memory_utilization.")
    vllm_enforce_eager: bool = Field(False, description="Disable CUDA graphs in vLLM.")
    vllm_max_lora_rank: int = Field(32, ge=1, description="Largest LoRA rank vLLM serves.")
    vllm_config: dict[str, Any] | None = Field(None, description="Extra vLLM engine arguments.")


class GenerationConfig(ConfigGroup):
    """Sampling settings for chat, serving and PPO rollouts (LLaMA-Factory GeneratingArguments)."""

    do_sample: bool = Field(True, description="Sample instead of greedy decoding.")
    temperature: float = Field(0.95, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(0.7, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=0, description="Top-k sampling (0 disables).")
    num_beams: int = Field(1, ge=1, description="Beam search width.")
    max_length: int = Field(1024, ge=1, description="Maximum total length (used when max_new_tokens <= 0).")
    max_new_tokens: int = Field(1024, description="Maximum new tokens; wins over max_length when > 0.")
    repetition_penalty: float = Field(1.0, gt=0.0, description="Repetition penalty.")
    length_penalty: float = Field(1.0, description="Beam search length penalty.")
    skip_special_tokens: bool = Field(True, description="Drop special tokens when decoding.")
