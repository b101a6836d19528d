"""Batch collators: right padding, or one of two layouts for neatly packed examples.

Neat packing never lets packed examples attend to each other: ``position_ids`` restart at 0 for every example and
there is no attention mask. transformers (masking_utils.find_packed_sequence_indices) turns restarting position ids
into a block-diagonal causal mask for eager and sdpa attention, and flash-attention uses them as varlen boundaries.

- :class:`FlatteningCollator` puts the whole micro-batch into one row: no padding at all, the layout for
  flash-attention's varlen kernels, whose cost grows with the tokens of each example only.
- :class:`PackedRowsCollator` keeps one packed bin per row, right-padded: the layout for sdpa and eager attention,
  which compute (and mask) the full square of a row. One row of B bins would cost B times the attention and mask
  work of B rows of one bin each.

:func:`neat_packing_collator` picks the layout for the attention implementation the model was loaded with. Both give
the same loss (the same label tokens, each example attending to itself only). Padding-free pt/sft on sdpa
(kubetune.model.varlen, chosen in kubetune.train.workflow) also takes the flattened row, padded batches included: its
attention runs SDPA per example, so its cost too follows the examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.data.tokenize import IGNORE_INDEX

# transformers attention implementations that take packed rows as varlen sequences (cost linear in examples).
VARLEN_ATTENTION = frozenset({"flash_attention_2", "flash_attention_3", "kernels-community/flash-attn",
                              "kernels-community/flash-attn3", "kernels-community/vllm-flash-attn3"})


@dataclass
class PaddingCollator:
    """Pads input_ids with ``pad_token_id``, labels with -100 and builds attention_mask (right padding)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
        for f in features:
            pad = longest - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            batch["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            batch["attention_mask"].append([1] * len(f["input_ids"]) + [0] * pad)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def packed_example(feature: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """(input_ids, labels, position_ids) of one packed bin; the first label of every example becomes -100 so no
    example is trained to predict from its neighbour. A feature without ``position_ids`` is one example."""
    pos = list(feature.get("position_ids") or range(len(feature["input_ids"])))
    labels = [IGNORE_INDEX if p == 0 else label for p, label in zip(pos, feature["labels"], strict=True)]
    return list(feature["input_ids"]), labels, pos


@dataclass
class MultimodalCollator:
    """Pads like :class:`PaddingCollator` and turns each example's ``images`` (file paths) into the processor's
    pixel inputs (``pixel_values``, and ``image_grid_thw`` / ``mm_token_type_ids`` for Qwen2-VL style models).

    Images are read and scaled to the pixel bounds here, per batch, exactly as the token counts were computed
    when tokenizing (kubetune.data.media), so features and image tokens match.
    """

    padding: PaddingCollator
    processor: Any
    max_pixels: int
    min_pixels: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        from kubetune.data.media import load_image

        batch = self.padding(features)
        paths = [p for f in features for p in (f.get("images") or [])]
        if not paths:
            return batch
        images = [load_image(p, self.max_pixels, self.min_pixels) for p in paths]
        batch.update(self.processor.image_processor(images=images, return_tensors="pt"))
        if getattr(self.processor, "return_mm_token_type_ids", False):
            types = self.processor.create_mm_token_type_ids(batch["input_ids"].tolist())
            batch["mm_token_type_ids"] = torch.tensor(types, dtype=torch.long)
        return batch


@dataclass
class FlatteningCollator:
    """Concatenates the micro-batch into one row with restarting ``position_ids`` and no padding.

    Features may carry ``position_ids`` (knapsack bins holding several examples) or not (one example each).
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for f in features:
            i, lab, pos = packed_example(f)
            ids += i
            labels += lab
            positions += pos
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions])}


@dataclass
class PackedRowsCollator:
    """One packed bin per row, right-padded to the longest, restarting ``position_ids`` and no attention mask.

    The padding of a row is a segment of its own (positions 0, 1, ... again, labels -100): no real token attends
    to it, and it attends only to itself.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [packed_example(f) for f in features]
        longest = max(len(ids) for ids, _, _ in rows)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids_out, labels_out, pos_out = [], [], []
        for ids, labels, pos in rows:
            pad = longest - len(ids)
            ids_out.append(ids + [self.pad_token_id] * pad)
            labels_out.append(labels + [IGNORE_INDEX] * pad)
            pos_out.append(pos + list(range(pad)))
        return {"input_ids": torch.tensor(ids_out), "labels": torch.tensor(labels_out),
                "position_ids": torch.tensor(pos_out)}


def neat_packing_collator(attn_implementation: str | None,
                          pad_token_id: int) -> FlatteningCollator | PackedRowsCollator:
    """The neat-packing layout for this attention implementation (see the module docstring)."""
    if attn_implementation in VARLEN_ATTENTION:
        return FlatteningCollator()
    return PackedRowsCollator(pad_token_id=pad_token_id)
