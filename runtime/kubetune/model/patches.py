"""Model-loading keys that change the model's config or modules: rope_scaling, moe_aux_loss_coef,
upcast_layernorm, upcast_lmhead_output, and enable_liger_kernel's availability check.

The config decisions are pure functions of the model's config and the keys (:func:`rope_overrides`,
:func:`moe_overrides`, :func:`liger_kwargs`); they raise :class:`PatchError` naming the key when the key cannot
take effect on this model or machine, so a key is never accepted and then ignored.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

# Parameter-name parts of normalisation layers (LLaMA-Factory's LAYERNORM_NAMES).
LAYERNORM_NAMES = ("norm", "ln")


class PatchError(ValueError):
    """A model key cannot take effect on this model or machine; the message names the key."""


def rope_overrides(config: Any, kind: str, max_length: int) -> dict[str, Any]:
    """Config values that stretch RoPE to ``max_length`` (cutoff_len) as LLaMA-Factory does.

    The factor is ceil(max_length / max_position_embeddings); ``max_position_embeddings`` becomes ``max_length``;
    dynamic, yarn and llama3 keep the pretraining length as ``original_max_position_embeddings`` (llama3 with
    low/high frequency factors 1 and 4).

    Raises:
        PatchError: the model has no (single) RoPE, or ``max_length`` fits in its positions (nothing to scale).
    """
    old = getattr(config, "max_position_embeddings", None)
    params = getattr(config, "rope_parameters", None)
    if not isinstance(old, int) or not isinstance(params, dict) or "rope_type" not in params:
        raise PatchError(f"rope_scaling: model type {getattr(config, 'model_type', '?')} has no RoPE settings "
                         "kubetune can scale")
    if max_length <= old:
        raise PatchError(f"rope_scaling: cutoff_len {max_length} fits in the model's {old} positions, so RoPE "
                         "scaling would change nothing; raise cutoff_len above it or drop rope_scaling")
    rope: dict[str, Any] = {"rope_type": kind, "factor": float(math.ceil(max_length / old))}
    if "rope_theta" in params:
        rope["rope_theta"] = params["rope_theta"]
    if kind in ("dynamic", "yarn", "llama3"):
        rope["original_max_position_embeddings"] = old
    if kind == "llama3":
        rope |= {"low_freq_factor": 1.0, "high_freq_factor": 4.0}
    return {"rope_parameters": rope, "max_position_embeddings": max_length}


def moe_overrides(config: Any, coef: float) -> dict[str, Any]:
    """Config values that add the router load-balancing loss with weight ``coef`` (moe_aux_loss_coef).

    Raises:
        PatchError: the model has no MoE router loss (a dense model).
    """
    if not hasattr(config, "router_aux_loss_coef"):
        raise PatchError(f"moe_aux_loss_coef: model type {getattr(config, 'model_type', '?')} is not a "
                         "mixture-of-experts model with a router loss; drop the key")
    return {"router_aux_loss_coef": coef, "output_router_logits": True}


def liger_kwargs(enabled: bool, installed: bool, cuda: bool) -> dict[str, Any]:
    """TrainingArguments values for enable_liger_kernel (transformers patches the model with Liger's kernels).

    Raises:
        PatchError: Liger's Triton kernels need the liger-kernel package and a CUDA GPU.
    """
    if not enabled:
        return {}
    if not (installed and cuda):
        raise PatchError("enable_liger_kernel: Liger's Triton kernels need the liger-kernel package and a CUDA GPU "
                         f"({'no CUDA GPU here' if installed else 'liger-kernel is not installed'}); "
                         "pip install 'kubetune[gpu]' on a GPU machine, or drop the key")
    return {"use_liger_kernel": True}


def upcast_layernorms(model: nn.Module) -> list[str]:
    """Keep normalisation weights in fp32 (upcast_layernorm); returns the names upcast."""
    names = []
    for name, param in model.named_parameters():
        if param.ndim == 1 and any(part in name for part in LAYERNORM_NAMES) and param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)
            names.append(name)
    return names


def _fp32_output(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    return output.to(torch.float32)


def upcast_lmhead_output(model: Any) -> bool:
    """Return the output head's logits in fp32 (upcast_lmhead_output); False when the head is not a Linear."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, nn.Linear):
        return False
    head.register_forward_hook(_fp32_output)
    return True
