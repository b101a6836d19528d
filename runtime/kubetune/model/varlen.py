"""Padding-free attention for CPU: PyTorch SDPA run per example on one flattened row.

A flattened micro-batch (kubetune.data.collators.FlatteningCollator) is one row of real tokens whose
``position_ids`` restart at 0 for every example. Stock sdpa/eager attention turns that into a dense block-diagonal
mask over the whole row (transformers masking_utils.find_packed_sequence_indices), which costs the square of the
row. :data:`VARLEN_SDPA` instead runs ``scaled_dot_product_attention(..., is_causal=True)`` on each example's slice
of the row, which is what varlen flash-attention does on a GPU: every linear layer sees real tokens only, and
attention costs the sum of the examples' squares.

It is registered in transformers' ``AttentionInterface`` with a mask function in ``AttentionMaskInterface`` that
builds no mask for such a row. Every other call (a padding mask, a KV cache, a sliding window that bites) takes
transformers' own sdpa mask and attention, so a model loaded with it computes what ``sdpa`` computes.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

VARLEN_SDPA = "kubetune_sdpa_varlen"


def segment_bounds(position_ids: torch.Tensor) -> list[int]:
    """Start offsets of the examples in one row of ``position_ids`` plus the row length, e.g. [0, 3, 7].

    An example starts where the position does not follow its predecessor (the rule of transformers'
    find_packed_sequence_indices), so one ordinary sequence is a single segment.
    """
    starts = torch.nonzero(position_ids[1:] != position_ids[:-1] + 1).flatten() + 1
    return [0, *starts.tolist(), int(position_ids.shape[0])]


def _row_bounds(batch: int, length: int, kwargs: dict[str, Any]) -> list[list[int]] | None:
    """Example boundaries of each row: from ``cu_seq_lens_q`` (one flattened row, as transformers'
    DataCollatorWithFlattening gives them) or from ``position_ids``; None when neither is there."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None and batch == 1 and int(cu[-1]) == length:
        return [[int(x) for x in cu.tolist()]]
    position_ids = kwargs.get("position_ids")
    if position_ids is None or position_ids.shape[-1] != length:
        return None
    return [segment_bounds(row) for row in position_ids.expand(batch, -1)]


def sdpa_varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' ``sdpa_attention_forward`` run per example when the call is a causal training forward with no
    mask (query and key the same length, boundaries from ``cu_seq_lens_q`` or ``position_ids``); otherwise exactly
    ``sdpa_attention_forward``. GQA, scaling and dropout are handled by it for every slice.

    Returns the attention output (batch, length, heads, head_dim) and None (no attention weights).
    """
    batch, length = query.shape[0], query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    plain = (attention_mask is None and causal and key.shape[2] == length and length > 1
             and kwargs.get("position_bias") is None)
    bounds = _row_bounds(batch, length, kwargs) if plain else None
    if bounds is None or all(len(b) == 2 for b in bounds):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    rest = {k: v for k, v in kwargs.items() if k not in ("position_ids", "cu_seq_lens_q", "cu_seq_lens_k")}
    rows = []
    for b, row in enumerate(bounds):
        parts = [sdpa_attention_forward(module, query[b:b + 1, :, s:e], key[b:b + 1, :, s:e],
                                        value[b:b + 1, :, s:e], None, dropout=dropout, scaling=scaling,
                                        is_causal=True, **rest)[0]
                 for s, e in pairwise(row)]
        rows.append(torch.cat(parts, dim=1))
    return torch.cat(rows, dim=0), None


def sdpa_varlen_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                     attention_mask: torch.Tensor | None = None, local_size: int | None = None,
                     use_vmap: bool = False, **kwargs: Any) -> torch.Tensor | None:
    """No mask for a causal training forward without padding (the attention splits the row per example); anything
    else (a padding mask, a cache offset, a custom mask function, a sliding window shorter than the row) is
    transformers' ``sdpa_mask``."""
    if (attention_mask is None and q_offset == 0 and kv_offset == 0 and q_length == kv_length and not use_vmap
            and (local_size is None or local_size >= kv_length)):
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, attention_mask=attention_mask, local_size=local_size, use_vmap=use_vmap,
                     **kwargs)


def register() -> str:
    """Register :data:`VARLEN_SDPA` with transformers (idempotent) and return its name."""
    AttentionInterface.register(VARLEN_SDPA, sdpa_varlen_attention)
    AttentionMaskInterface.register(VARLEN_SDPA, sdpa_varlen_mask)
    return VARLEN_SDPA


def use_varlen_sdpa(model: Any) -> None:
    """Switch a model loaded with ``sdpa`` to :data:`VARLEN_SDPA` (its config, and every sub-config that names
    sdpa, so the decoder body and its attention modules take it); a PEFT wrapper is looked through."""
    register()
    base = model.get_base_model() if hasattr(model, "peft_config") else model
    base.set_attn_implementation(VARLEN_SDPA)
