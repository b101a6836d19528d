"""Batch collators: right padding, or padding-free flattening for packed examples.

Flattening puts the whole micro-batch into one row without an attention mask; ``position_ids`` restart at 0 for
every example. transformers (masking_utils.find_packed_sequence_indices) turns restarting position ids into a
block-diagonal causal mask for eager and sdpa attention, and flash-attention uses them as varlen boundaries, so
packed examples never attend to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.data.tokenize import IGNORE_INDEX


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
    The first label of every example is -100 so no example is trained to predict from its neighbour.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for f in features:
            pos = list(f.get("position_ids") or range(len(f["input_ids"])))
            lab = list(f["labels"])
            for j, p in enumerate(pos):
                if p == 0:
                    lab[j] = IGNORE_INDEX
            ids += list(f["input_ids"])
            labels += lab
            positions += pos
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions])}
