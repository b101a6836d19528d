"""LoRA adapters onto a loaded base model: check an adapter directory, merge adapters in order.

Shared by the export (merge and save) and the hf serving engine (merge at load): both read the same adapter
manifests and refuse an adapter trained on another base with the same message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from kubetune.artifacts import MANIFEST_NAME, ArtifactError, ArtifactManifest, check_artifact

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_adapter(adapter: str, *, strict: bool) -> ArtifactManifest | None:
    """Read an adapter's manifest (required when ``strict``; plain PEFT directories pass otherwise)."""
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ArtifactError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")
    if not strict and not (Path(adapter) / MANIFEST_NAME).is_file():
        return None
    return check_artifact(adapter, expect_type="lora-adapter")


@contextmanager
def fits_base(adapter: str, manifest: ArtifactManifest | None, base: str, advice: str) -> Iterator[None]:
    """Turn PEFT's shape error for an adapter trained on another base model into an ArtifactError for people.

    Args:
        adapter: how the message names the adapter.
        manifest: its manifest, which records the base it was trained on (None for a plain PEFT directory).
        base: the model it was loaded onto.
        advice: what to do instead.
    """
    try:
        yield
    except RuntimeError as exc:
        if "size mismatch" not in str(exc):
            raise
        trained_on = manifest.base_model.uri if manifest and manifest.base_model.uri else "another model"
        raise ArtifactError(f"{adapter}: an adapter for another base model (it was trained on {trained_on} and does "
                            f"not fit {base}); {advice}") from exc


def grow_for_adapter(model: PreTrainedModel, adapter: str | Path) -> int | None:
    """Resize the embeddings as training did when the adapter's tokenizer has tokens the base lacks (add_tokens,
    add_special_tokens): the adapter then carries the grown embeddings. Returns the new row count, or None."""
    from transformers import AutoTokenizer

    from kubetune.model.vocab import resize_embeddings

    if not (Path(adapter) / "tokenizer_config.json").is_file():
        return None
    return resize_embeddings(model, len(AutoTokenizer.from_pretrained(str(adapter))))


def apply_adapters(model: PreTrainedModel, adapters: list[str],
                   manifests: list[ArtifactManifest | None]) -> PreTrainedModel:
    """Merge each adapter into ``model`` in order (W += B·A·scale per adapter) and return the plain model."""
    from peft import PeftModel

    for adapter, manifest in tqdm(list(zip(adapters, manifests, strict=True)), desc="merging adapters",
                                  unit="adapter", disable=not adapters):
        grow_for_adapter(model, adapter)
        with fits_base(adapter, manifest, str(model.name_or_path), "use the base it was trained on"):
            peft_model = PeftModel.from_pretrained(model, adapter)
        model = peft_model.merge_and_unload()
    return model
