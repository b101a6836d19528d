"""The state of one running batch in the HF engine, and the tensor surgery that admits and retires rows.

Rows are left-padded: every row's newest token sits in the last column, so one forward pass of shape [B, 1]
advances all of them. New rows are prefilled on their own and then joined to the running batch by padding the
shorter side's KV cache and attention mask on the left; finished rows are removed by index. This is what lets
requests that arrive while others are generating join them at the next step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def can_join(cache: DynamicCache) -> bool:
    """Whether ``cache`` is made of plain dynamic layers, the only kind whose rows can be padded and joined."""
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _pad_left(t: torch.Tensor, size: int, dim: int, value: float = 0) -> torch.Tensor:
    missing = size - t.shape[dim]
    if missing <= 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim % t.dim()) + [missing, 0]
    return F.pad(t, pad, value=value)


@dataclass
class BatchState:
    """Tensors of the running rows, aligned on the right (the last column is each row's newest token)."""

    cache: DynamicCache
    mask: torch.Tensor  # [B, T] 1 for real tokens, 0 for left padding
    lengths: torch.Tensor  # [B] real tokens per row (= position of the next token)
    completion: torch.Tensor  # [B, C] generated ids, -1 on the left where a row has fewer
    logits: torch.Tensor  # [B, V] next-token logits of each row
    rope_delta: torch.Tensor | None = None  # [B] next position minus real tokens (3-D rope images), None = all 0
    padded: bool = True  # whether some row may have left padding (False: the model needs no attention mask)

    @property
    def forward_mask(self) -> torch.Tensor | None:
        """The attention mask a forward pass needs: none while no row is padded (one less mask to build per step)."""
        return self.mask if self.padded else None

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    def next_positions(self) -> torch.Tensor:
        """[B, 1] position of each row's next token."""
        return (self.lengths if self.rope_delta is None else self.lengths + self.rope_delta)[:, None]

    def _deltas(self) -> torch.Tensor:
        return self.rope_delta if self.rope_delta is not None else torch.zeros_like(self.lengths)

    def join(self, other: BatchState) -> BatchState:
        """This batch followed by ``other``'s rows, padding whichever is shorter on the left."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            # can_join admitted only filled DynamicLayers (the cache's union type also holds layers without keys)
            assert isinstance(mine, DynamicLayer) and isinstance(theirs, DynamicLayer)
            assert mine.keys is not None and mine.values is not None
            assert theirs.keys is not None and theirs.values is not None
            mine.keys = torch.cat([_pad_left(mine.keys, width, -2), _pad_left(theirs.keys, width, -2)])
            mine.values = torch.cat([_pad_left(mine.values, width, -2), _pad_left(theirs.values, width, -2)])
        cols = max(self.completion.shape[1], other.completion.shape[1])
        return BatchState(
            cache=self.cache,
            mask=torch.cat([_pad_left(self.mask, width, 1), _pad_left(other.mask, width, 1)]),
            lengths=torch.cat([self.lengths, other.lengths]),
            completion=torch.cat([_pad_left(self.completion, cols, 1, -1), _pad_left(other.completion, cols, 1, -1)]),
            logits=torch.cat([self.logits, other.logits]),
            padded=self.padded or other.padded or self.mask.shape[1] != other.mask.shape[1],
            rope_delta=None if self.rope_delta is None and other.rope_delta is None
            else torch.cat([self._deltas(), other._deltas()]),
        )

    def keep(self, rows: list[int]) -> BatchState:
        """Only the given rows (in that order)."""
        index = torch.tensor(rows, device=self.mask.device, dtype=torch.long)
        self.cache.batch_select_indices(index)
        return BatchState(cache=self.cache, mask=self.mask[index], lengths=self.lengths[index],
                          completion=self.completion[index], logits=self.logits[index], padded=self.padded,
                          rope_delta=None if self.rope_delta is None else self.rope_delta[index])

    def append(self, tokens: torch.Tensor) -> None:
        """Record the tokens just sampled (one per row) before they are fed to the model."""
        self.completion = torch.cat([self.completion, tokens[:, None]], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)


def left_pad(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of ``prompts`` padded on the left to the longest."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)
