"""Which flat key belongs to which group, which LLaMA-Factory keys kubetune does not support, and spelling help.

The tables are data: ``KEY_GROUP`` is read off the group models' fields (every key lives in exactly one group),
``UNSUPPORTED`` and ``UNSUPPORTED_PREFIXES`` list LLaMA-Factory keys with the feature they belong to.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from kubetune.config.data_args import DataConfig
from kubetune.config.eval_args import EvaluationConfig
from kubetune.config.grpo_args import GrpoConfig
from kubetune.config.hf_keys import HF_TRAINING_KEYS
from kubetune.config.method_args import MethodConfig, PreferenceConfig
from kubetune.config.model_args import GenerationConfig, ModelConfig
from kubetune.config.optimizer_args import OptimizerConfig
from kubetune.config.runtime import RunConfig
from kubetune.config.training_args import DistributedConfig, TrainingConfig

GROUPS: dict[str, type[BaseModel]] = {
    "model": ModelConfig,
    "data": DataConfig,
    "method": MethodConfig,
    "preference": PreferenceConfig,
    "grpo": GrpoConfig,
    "generation": GenerationConfig,
    "training": TrainingConfig,
    "distributed": DistributedConfig,
    "run": RunConfig,
    "evaluation": EvaluationConfig,
    "optimizer": OptimizerConfig,
}
TOP_LEVEL_KEYS = frozenset({"stage"})


def _key_group() -> dict[str, str]:
    table: dict[str, str] = {}
    for group, cls in GROUPS.items():
        for key in cls.model_fields:
            if key in table:
                raise AssertionError(f"key {key} is declared in both {table[key]} and {group}")
            table[key] = group
    return table


KEY_GROUP: dict[str, str] = _key_group()

# LLaMA-Factory keys that have a kubetune spelling: key -> (kubetune key, invert the boolean).
RENAMED: dict[str, tuple[str, bool]] = {
    "disable_gradient_checkpointing": ("gradient_checkpointing", True),
}

UNSUPPORTED: dict[str, str] = {
    **dict.fromkeys(("shift_attn",), "LongLoRA shift attention"),
    **dict.fromkeys(("mixture_of_depths",), "mixture of depths"),
    **dict.fromkeys(("use_unsloth", "use_unsloth_gc"), "Unsloth"),
    **dict.fromkeys(("hf_hub_token", "ms_hub_token", "om_hub_token"),
                    "tokens in config files; use a Secret (credentialsSecretRef) or the HF_TOKEN variable"),
    **dict.fromkeys(("new_special_tokens_config", "init_special_tokens"), "semantic init of new tokens"),
    **dict.fromkeys(("offload_folder", "quantization_device_map", "print_param_status", "use_v1_kernels"),
                    "this loading option"),
    **dict.fromkeys(("crop_to_patches", "use_audio_in_video", "image_do_pan_and_scan"),
                    "this multimodal processor option (Qwen2-VL and LLaVA style models take none)"),
    **dict.fromkeys(("streaming", "buffer_size"), "streaming datasets"),
    **dict.fromkeys(("eval_num_beams", "generation_max_length", "generation_num_beams",
                     "generation_config", "sortish_sampler", "compute_accuracy"),
                    "generation during evaluation; use kubetune eval"),
    **dict.fromkeys(("pure_bf16",), "pure bf16 training; use bf16 mixed precision"),
    **dict.fromkeys(("use_llama_pro",), "LLaMA Pro block expansion"),
    **dict.fromkeys(("use_adam_mini", "use_muon"), "this optimizer"),
    **dict.fromkeys(("use_mca", "use_megatron_bridge", "use_hyper_parallel", "hyper_parallel_args",
                     "hyper_parallel_cp_size", "use_kt", "kt_config"), "alternative training back-ends"),
    **dict.fromkeys(("use_dft_loss", "use_asft_loss", "use_eaft_loss", "asft_alpha", "eaft_alpha"),
                    "alternative SFT losses"),
    **dict.fromkeys(("oft_rank", "oft_block_size", "oft_target", "module_dropout"), "OFT adapters"),
    **dict.fromkeys(("disable_shuffling", "early_stopping_steps", "include_effective_tokens_per_second"),
                    "this trainer option"),
    **dict.fromkeys(("use_swanlab",), "SwanLab logging; use report_to"),
    **dict.fromkeys(("ray_num_workers", "ray_init_kwargs", "master_addr", "master_port"),
                    "Ray launching; kubetune launches through torchrun / PyTorchJob"),
    **dict.fromkeys(("enable_torch_profiler", "profile_modules"), "the built-in profiler"),
    **dict.fromkeys(("fp8", "fp8_backend", "fp8_enable_fsdp_float8_all_gather"), "FP8 training"),
    **dict.fromkeys(("task", "task_dir", "lang", "n_shot", "save_dir", "download_mode"),
                    "MMLU-style evaluation keys; use kubetune eval"),
    **dict.fromkeys(("export_dir", "export_size", "export_device", "export_quantization_bit",
                     "export_quantization_dataset", "export_quantization_nsamples",
                     "export_quantization_maxlen", "export_legacy_format", "export_hub_model_id"),
                    "export keys in a training config; use a ModelExport or kubetune export"),
}
# Keys kubetune accepts (LLaMA-Factory configs set them) but only at this value: anything else would be ignored.
# key -> (the one accepted value, what kubetune does instead).
DEFAULT_ONLY: dict[str, tuple[Any, str]] = {
    "low_cpu_mem_usage": (True, "transformers always loads weights without a second copy"),
    "use_fast_tokenizer": (True, "kubetune loads the tokenizers-backed tokenizer"),
    **{key: (default, "training generates with transformers; inference settings belong to a serve or export "
                      "config (kubetune serve, InferenceService, ModelExport)")
       for key, default in (("infer_backend", "huggingface"), ("infer_dtype", "auto"), ("use_kv_cache", True),
                            ("vllm_maxlen", 4096), ("vllm_gpu_util", 0.7), ("vllm_enforce_eager", False),
                            ("vllm_max_lora_rank", 32), ("vllm_config", None))},
    "eval_on_each_dataset": (False, "evaluation reports one loss over all evaluation datasets"),
    "ignore_pad_token_for_loss": (True, "padding never contributes to the loss"),
    "preserve_thinking": (False, "templates drop the reasoning of earlier turns"),
    "tool_format": (None, "training renders tool calls in the template's own format; tool_format applies to "
                          "serving"),
    "pissa_convert": (False, "PiSSA adapters are saved as trained; kubetune export merges them into the model"),
    "reward_model_adapters": (None, "the reward model is loaded as it is; merge its adapters first (kubetune export)"),
    "pref_bco_weight": (0.0, "the BCO loss mixed into DPO is not supported"),
    "ref_model_quantization_bit": (None, "frozen models are loaded in the training precision"),
    "reward_model_quantization_bit": (None, "frozen models are loaded in the training precision"),
    "remove_unused_columns": (False, "kubetune's collators need every column of the tokenized data"),
    "gradient_checkpointing_kwargs": (None, "gradient checkpointing is configured by use_reentrant_gc"),
    "activation_checkpointing_kwargs": (None, "gradient checkpointing is configured by use_reentrant_gc"),
    "do_train": (True, "kubetune train always trains"),
}

UNSUPPORTED_PREFIXES: dict[str, str] = {
    "swanlab_": "SwanLab logging", "profiler_": "the built-in profiler", "kt_": "KTransformers",
    "sglang_": "SGLang", "video_": "video training (images only)",
    "audio_": "audio training (images only)", "export_": "export keys in a training config",
}


def known_keys() -> list[str]:
    """Every key a flat runtime config may contain."""
    return sorted({*KEY_GROUP, *TOP_LEVEL_KEYS, *RENAMED, *HF_TRAINING_KEYS})


def group_of(key: str) -> str | None:
    """The group a flat key goes to ('' for top-level keys), or None when kubetune does not know it."""
    if key in TOP_LEVEL_KEYS:
        return ""
    if key in KEY_GROUP:
        return KEY_GROUP[key]
    if key in HF_TRAINING_KEYS:
        return "training"
    return None


def unsupported_reason(key: str) -> str | None:
    """Why a LLaMA-Factory key is rejected, or None when it is not a known unsupported key."""
    if key in UNSUPPORTED:
        return UNSUPPORTED[key]
    return next((why for prefix, why in UNSUPPORTED_PREFIXES.items() if key.startswith(prefix)), None)


def refused_value(key: str, value: Any) -> str | None:
    """Why ``value`` is refused for ``key`` (a key kubetune takes at one value only), or None when it is fine."""
    if key not in DEFAULT_ONLY:
        return None
    only, why = DEFAULT_ONLY[key]
    if isinstance(only, bool) or isinstance(value, bool):
        same = value is only
    else:
        same = value == only and (isinstance(value, int | float) or type(value) is type(only))
    return None if same else f"{key}: kubetune accepts only {only!r} (got {value!r}): {why}"


def suggest(key: str) -> str | None:
    """The closest known key to a misspelt one, if any is close enough."""
    matches = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.75)
    return matches[0] if matches else None
