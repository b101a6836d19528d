"""The LM head and cross-entropy on labelled positions only, in chunks.

A causal LM's stock forward applies the LM head to every position and the loss then ignores the positions whose
(shifted) label is -100: prompt tokens under SFT, padding, the pads and example boundaries of packed rows. Here the
hidden states of the labelled positions are selected first, and the head and the cross-entropy run on those only,
``chunk_tokens`` rows at a time, so ``[tokens, vocab]`` logits are never materialised at once for a large
vocabulary (the chunked / fused cross-entropy of Liger-Kernel and torchtune's ``CEWithChunkedOutputLoss``).

With more than one chunk, each chunk's logits are recomputed in the backward pass (activation checkpointing)
instead of kept: memory stays at one chunk's logits for one more head matmul per chunk. A single chunk keeps its
logits like the stock path and costs nothing extra.

The functions take any LM head module (``nn.Linear``, a LoRA-wrapped head, a tied embedding's linear), so the
preference losses can score sequences with :func:`labelled_token_logps` the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
# Logit elements computed at once: 16M fp32 values (64 MiB); a 128K vocabulary gives 128-token chunks.
LOGITS_BUDGET = 1 << 24


def shift_labels(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Targets of each position: position t predicts ``labels[t + 1]``; the last position of a row has none.

    The same shift as transformers' ``ForCausalLMLoss`` (pad right with ``ignore_index``, drop the first)."""
    return nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]


def labelled_hidden(hidden: torch.Tensor, targets: torch.Tensor,
                    ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hidden states [N, H], targets [N])`` of the positions whose target is not ``ignore_index``.

    Args:
        hidden: ``[..., H]`` final hidden states (after the decoder's last norm).
        targets: ``[...]`` shifted labels, the shape of ``hidden`` without its last dimension.
    """
    keep = targets != ignore_index
    return hidden[keep], targets[keep]


def chunk_size(vocab_size: int, budget: int = LOGITS_BUDGET) -> int:
    """Rows per chunk so that one chunk's logits hold at most ``budget`` elements (at least one row)."""
    return max(budget // max(vocab_size, 1), 1)


def _chunked(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], hidden: torch.Tensor,
             targets: torch.Tensor, chunk_tokens: int) -> list[torch.Tensor]:
    if hidden.shape[0] <= chunk_tokens:
        return [fn(hidden, targets)]
    return [checkpoint(fn, h, t, use_reentrant=False)
            for h, t in zip(hidden.split(chunk_tokens), targets.split(chunk_tokens), strict=True)]


def labelled_cross_entropy(hidden: torch.Tensor, lm_head: nn.Module, targets: torch.Tensor,
                           chunk_tokens: int) -> torch.Tensor:
    """Sum of the next-token cross-entropy over the rows of ``hidden`` (all labelled), as a 0-d float32 tensor.

    The logits are upcast to float32 before the loss, as in ``ForCausalLMLoss``.

    Args:
        hidden: ``[N, H]`` hidden states of labelled positions (:func:`labelled_hidden`).
        lm_head: the model's output embedding module.
        targets: ``[N]`` token ids, none of them ``ignore_index``.
        chunk_tokens: rows whose logits are computed at once (:func:`chunk_size`).
    """
    def chunk_loss(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(lm_head(h).float(), t, reduction="sum")

    if hidden.shape[0] == 0:  # no labelled position: zero, still connected to the graph
        return hidden.sum().float() * 0.0
    return torch.stack(_chunked(chunk_loss, hidden, targets, chunk_tokens)).sum()


def labelled_token_logps(hidden: torch.Tensor, lm_head: nn.Module, targets: torch.Tensor,
                         chunk_tokens: int) -> torch.Tensor:
    """``[N]`` float32 log-probabilities of ``targets`` under the head's softmax, chunk by chunk (same args as
    :func:`labelled_cross_entropy`); a sequence's log-likelihood is the sum over its positions."""
    def chunk_logps(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -nn.functional.cross_entropy(lm_head(h).float(), t, reduction="none")

    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.float32)
    return torch.cat(_chunked(chunk_logps, hidden, targets, chunk_tokens))
