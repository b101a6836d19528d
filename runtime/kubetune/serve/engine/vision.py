"""Prefill inputs of rows with images, for the ``hf`` engine's vision-language models.

A prefill batch may mix rows with images and text rows. The rows' pixel inputs are concatenated in row order
(Qwen2-VL's flattened patches and ``image_grid_thw``, LLaVA's picture stack), so the model matches each image
token run to its own picture.

Qwen2-VL style models place tokens by 3-D rope positions (temporal, height, width): an image of h x w merged
patches takes ``max(h, w)`` positions for ``h * w`` tokens, so after it each row's next position runs ahead of or
behind its token count. :func:`prefill_inputs` computes the positions with the model's own ``get_rope_index``
(as ``generate`` does, from the rows' attention mask) and returns each row's offset ``rope_delta``: its next
position minus its real token count. Every decode step feeds row ``i`` the position ``length_i + rope_delta_i``
(text tokens have equal coordinates, so one number per row is all the model needs). Text rows get 0, which is
what they get today.

With separate LoRA adapters, a prefill with pixel inputs holds the rows of one request and runs under
:func:`one_adapter`; decode steps (text tokens only) choose adapters per row as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch


def _inner(model: Any) -> Any:
    """The transformers model under a peft wrapper (or ``model`` itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


@contextmanager
def one_adapter(model: Any, adapter: str | None) -> Iterator[None]:
    """Run a peft model with ``adapter`` (None: no adapter) in every layer, restored afterwards.

    peft's per-row ``adapter_names`` split a layer's input by its first dimension, which in the vision tower and
    projector counts image patches, not requests: a prefill with pixel inputs runs one adapter for the whole batch
    instead.
    """
    if adapter is None:
        with model.disable_adapter():
            yield
        return
    previous = model.active_adapter
    model.set_adapter(adapter, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter(previous, inference_mode=True)


def concat_images(images: Sequence[Mapping[str, Any] | None], device: torch.device, dtype: torch.dtype
                  ) -> dict[str, torch.Tensor]:
    """The pixel inputs of the rows that have images, concatenated in row order (floats in the model's dtype)."""
    given = [i for i in images if i is not None]
    if not given:
        return {}
    keys = set(given[0])
    if any(set(i) != keys for i in given):
        raise ValueError("rows carry different kinds of pixel inputs")
    out = {}
    for key in sorted(keys):
        parts = [torch.as_tensor(i[key]) for i in given]
        joined = torch.cat(parts).to(device)
        out[key] = joined.to(dtype) if joined.is_floating_point() else joined
    return out


def rope_index(model: Any, ids: torch.Tensor, mask: torch.Tensor, pixels: Mapping[str, torch.Tensor]
               ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(3-D positions [3, B, T], per-row rope delta [B]) when the model places images by 3-D rope, else None."""
    inner = getattr(_inner(model), "model", None)
    get_rope_index = getattr(inner, "get_rope_index", None)
    if get_rope_index is None or "image_grid_thw" not in pixels:
        return None
    image_token = _inner(model).config.image_token_id
    types = (ids == image_token).to(torch.int)
    positions, _ = get_rope_index(ids, types, image_grid_thw=pixels["image_grid_thw"], attention_mask=mask)
    top = positions.amax(0).masked_fill(mask == 0, -1).amax(-1)
    return positions, top + 1 - mask.sum(-1)


def prefill_inputs(model: Any, images: Sequence[Mapping[str, Any] | None], ids: torch.Tensor, mask: torch.Tensor,
                   positions: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor | None]:
    """(extra forward kwargs, position ids, per-row rope delta or None) for a prefill of rows with ``images``.

    ``positions`` are the rows' text positions; with 3-D rope they are passed as the first of four position rows,
    as ``generate`` passes them.
    """
    if all(i is None for i in images):
        return {}, positions, None
    dtype = next(model.parameters()).dtype
    pixels = concat_images(images, ids.device, dtype)
    mrope = rope_index(model, ids, mask, pixels)
    if mrope is None:
        return pixels, positions, torch.zeros_like(mask[:, 0])
    vision, delta = mrope
    return pixels, torch.cat([positions[None], vision]), delta
