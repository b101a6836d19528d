"""Where tokenized datasets are cached, and the key that says whether a cached one still fits."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from kubetune.config.runtime import RuntimeConfig
from kubetune.data.sources import DatasetSource

CACHE_VERSION = 1
# Data settings that change the tokenized result.
KEYED_DATA_SETTINGS = ("template", "cutoff_len", "train_on_prompt", "mask_history", "mix_strategy",
                       "interleave_probs", "max_samples", "val_size", "packing", "neat_packing", "tool_format",
                       "default_system", "enable_thinking", "bad_rows", "media_dir", "image_max_pixels",
                       "image_min_pixels")


def _fingerprint(source: DatasetSource) -> dict[str, Any]:
    files = []
    if source.path is not None:
        paths = [source.path] if source.path.is_file() else sorted(p for p in source.path.rglob("*") if p.is_file())
        for p in paths:
            st = p.stat()
            files.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return {"name": source.name, "attr": source.attr.model_dump(mode="json"), "files": files}


def _tokenizer_id(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else f"{tokenizer.name_or_path}:{len(tokenizer)}"
    specials = json.dumps([tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token])
    return hashlib.sha256((text + specials + str(tokenizer.chat_template or "")).encode()).hexdigest()


def cache_key(cfg: RuntimeConfig, stage: str, train: list[DatasetSource], evals: list[DatasetSource],
              tokenizer: Any, processor: Any = None) -> str:
    """A hash of everything the tokenized datasets depend on: data files (path, size, mtime), their registry
    entries, the tokenizer, the image processor (it sets the image token counts), the template and the data
    settings. Image files are referenced by path: replacing one under the same name needs overwrite_cache."""
    parts = {
        "version": CACHE_VERSION, "stage": stage, "seed": cfg.training.seed,
        "train": [_fingerprint(s) for s in train], "eval": [_fingerprint(s) for s in evals],
        "data": cfg.data.model_dump(mode="json", include=set(KEYED_DATA_SETTINGS)),
        "tokenizer": _tokenizer_id(tokenizer),
    }
    if processor is not None:
        parts["image_processor"] = processor.image_processor.to_json_string()
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def cache_dir(cfg: RuntimeConfig, key: str) -> Path:
    """tokenized_path when set (LLaMA-Factory semantics: load it if present, else save it there), otherwise
    <tokenized_cache_dir or $KUBETUNE_CACHE/tokenized or ~/.cache/kubetune/tokenized>/<key>."""
    if cfg.data.tokenized_path:
        return Path(cfg.data.tokenized_path)
    root = cfg.data.tokenized_cache_dir or os.environ.get("KUBETUNE_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "kubetune"
    return (base if cfg.data.tokenized_cache_dir else base / "tokenized") / key
