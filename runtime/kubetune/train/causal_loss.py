"""The causal-LM training loss without logits for unlabelled positions, and when it applies.

:func:`plain_head_parts` says whether a model's forward is exactly decoder body → LM head → transformers'
``ForCausalLMLoss``; only then can :func:`labelled_loss` run the body, keep the hidden states of labelled positions
and score them through :mod:`kubetune.train.lm_head`. Anything else (logit softcapping or scaling after the head,
MoE router losses, vision-language models, prompt-learning adapters, a custom loss function) keeps the stock
forward, which stays the reference: the two agree to float rounding (tests/unit/test_causal_loss.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kubetune.train.lm_head import (
    IGNORE_INDEX,
    chunk_size,
    labelled_cross_entropy,
    labelled_hidden,
    shift_labels,
)

# Causal LM classes (by config.model_type) whose forward is body → lm_head → loss_function, possibly with one of
# the config-controlled extras below; checked against transformers 5.23's modeling files.
PLAIN_HEAD_MODEL_TYPES = frozenset({
    "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text", "glm4", "olmo2",
    "starcoder2", "qwen2_moe", "qwen3_moe", "mixtral",
})
# Config keys that change the logits after the head (Gemma 2/3 softcapping, Granite, Cohere and other scalings).
LOGIT_TRANSFORM_KEYS = ("final_logit_softcapping", "logits_scaling", "logit_scale", "output_multiplier",
                        "lm_head_multiplier")
# Batch keys the decoder body takes; anything else (pixel values, ...) means the stock forward.
BODY_INPUTS = frozenset({"input_ids", "attention_mask", "position_ids", "inputs_embeds", "token_type_ids"})


@dataclass(frozen=True)
class HeadParts:
    """The decoder body and LM head of a plain causal LM, and its vocabulary size."""

    body: nn.Module
    lm_head: nn.Module
    vocab_size: int


def _without_peft(model: Any) -> Any | None:
    """The transformers model under a PEFT wrapper (None for prompt-learning adapters, which change the input)."""
    if not hasattr(model, "peft_config") or not hasattr(model, "get_base_model"):
        return model
    if any(getattr(c, "is_prompt_learning", False) for c in model.peft_config.values()):
        return None
    return model.get_base_model()


def plain_head_parts(model: Any) -> HeadParts | None:
    """The body and head of ``model`` when its training loss can be computed on labelled positions only.

    None when the forward does more than body → head → ``ForCausalLMLoss``: a model type not known to be plain or
    another head of the family (sequence classification), a config that transforms the logits
    (``final_logit_softcapping``, ``logits_scaling``, ``logit_scale``) or adds the MoE router loss
    (``output_router_logits``), a different ``loss_type``, or a prompt-learning adapter.
    """
    from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    inner = _without_peft(model)
    if inner is None:
        return None
    config = getattr(inner, "config", None)
    if config is None or getattr(config, "model_type", None) not in PLAIN_HEAD_MODEL_TYPES:
        return None
    if type(inner).__name__ != MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type):
        return None  # the family's other heads (sequence classification for reward models, ...)
    if any(getattr(config, key, None) not in (None, 1, 1.0) for key in LOGIT_TRANSFORM_KEYS):
        return None
    if getattr(config, "output_router_logits", False):
        return None
    if LOSS_MAPPING.get(getattr(inner, "loss_type", None) or "ForCausalLM") is not ForCausalLMLoss:
        return None
    body = getattr(inner, getattr(inner, "base_model_prefix", ""), None)
    head = inner.get_output_embeddings()
    if not isinstance(body, nn.Module) or not isinstance(head, nn.Module):
        return None
    return HeadParts(body=body, lm_head=head, vocab_size=int(config.vocab_size))


def labelled_loss(parts: HeadParts, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The loss ``ForCausalLMLoss`` gives for ``inputs`` (with ``labels`` or ``shift_labels``), computed from the
    hidden states of labelled positions only.

    Sum of the token cross-entropies divided by ``num_items_in_batch`` when given (the Trainer's count over the
    whole accumulated batch), else the mean over this batch's labelled positions (NaN when there are none, as
    the stock mean).
    """
    targets = inputs.get("shift_labels")
    if targets is None:
        targets = shift_labels(inputs["labels"], ignore_index)
    body_inputs = {k: v for k, v in inputs.items() if k in BODY_INPUTS}
    hidden = parts.body(**body_inputs, use_cache=False).last_hidden_state
    kept, kept_targets = labelled_hidden(hidden, targets.to(hidden.device), ignore_index)
    total = labelled_cross_entropy(kept, parts.lm_head, kept_targets, chunk_size(parts.vocab_size))
    if num_items_in_batch is None:
        return total / kept_targets.shape[0] if kept_targets.shape[0] else total / 0.0
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
