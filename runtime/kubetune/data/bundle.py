"""build_datasets: from a RuntimeConfig to ready-to-train datasets and a collator, tokenized once and cached.

pt/sft: datasets of ``input_ids``, ``labels`` (-100 where no loss) and, when packed neatly, ``position_ids``;
the collator pads (PaddingCollator) or flattens (FlatteningCollator, neat_packing). With a vision-language
processor, sft rows also carry ``images`` (file paths; their ``<image>`` placeholders already expanded into the
model's image tokens) and the MultimodalCollator adds the pixel inputs per batch.
rm/dpo/kto: datasets of preference rows in TRL's conversational format (see tokenize.preference_row); the
collator is None (the preference trainers bring theirs).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kubetune.config.runtime import RuntimeConfig
from kubetune.data.cache import cache_dir, cache_key
from kubetune.data.collators import FlatteningCollator, MultimodalCollator, PaddingCollator
from kubetune.data.distributed import main_process_first
from kubetune.data.formats import DataFormatError, Example
from kubetune.data.media import MediaError, expand_example
from kubetune.data.mixing import mix, split_eval
from kubetune.data.packing import chunk, pack_bins
from kubetune.data.parallel import map_batches
from kubetune.data.sources import DatasetSource, load_examples, resolve_sources
from kubetune.data.templates import resolve_template
from kubetune.data.tokenize import IGNORE_INDEX, SftSettings, encode_example, encode_text, preference_row

log = logging.getLogger(__name__)


@dataclass
class DataStats:
    """What preparation did: rows read and skipped per dataset, examples dropped, tokens, cache use."""

    rows: dict[str, int] = field(default_factory=dict)
    skipped_rows: dict[str, int] = field(default_factory=dict)
    dropped_examples: int = 0
    train_rows: int = 0
    eval_rows: int = 0
    train_tokens: int = 0
    from_cache: bool = False
    cache_path: str | None = None


@dataclass
class DatasetBundle:
    train: Any  # datasets.Dataset
    eval: Any | None
    collator: Any | None
    stats: DataStats


def _load(sources: list[DatasetSource], cfg: RuntimeConfig, stage: str, stats: DataStats) -> list[Example]:
    groups = []
    for source in sources:
        loaded = load_examples(source, stage, skip_bad_rows=cfg.data.bad_rows == "skip",
                               max_samples=cfg.data.max_samples, seed=cfg.training.seed)
        stats.rows[source.name] = len(loaded.examples)
        stats.skipped_rows[source.name] = loaded.skipped
        groups.append(loaded.examples)
    return mix(groups, cfg.data.mix_strategy, cfg.data.interleave_probs, cfg.training.seed)


def _encode_texts(batch: list[Example], tokenizer: Any, limit: int | None) -> list[dict[str, list[int]]]:
    return [encode_text(str(e.text), tokenizer, limit) for e in batch]


def _encode_examples(batch: list[Example], template: Any, tokenizer: Any, settings: SftSettings,
                     default_system: str | None, enable_thinking: bool, cfg: RuntimeConfig,
                     processor: Any = None) -> list[dict[str, Any]]:
    rows = []
    for e in batch:
        if default_system is not None and e.system is None:
            e.system = default_system
        paths = _expand_images(e, cfg, template, processor)
        row: dict[str, Any] = encode_example(e, template, tokenizer, settings, enable_thinking=enable_thinking)
        if processor is not None:
            _check_image_tokens(row, e, processor, cfg)
            row["images"] = paths
        rows.append(row)
    return rows


def _tokenize(examples: list[Example], cfg: RuntimeConfig, stage: str, tokenizer: Any,
              stats: DataStats, processor: Any = None) -> list[dict[str, Any]]:
    data = cfg.data
    batch, workers = data.preprocessing_batch_size, data.preprocessing_num_workers
    if stage == "pt":
        limit = None if data.packing else data.cutoff_len
        rows = map_batches(partial(_encode_texts, tokenizer=tokenizer, limit=limit), examples, batch, workers)
        if data.packing and not data.neat_packing:
            return chunk(rows, data.cutoff_len)
        rows = [{"input_ids": r["input_ids"][i:i + data.cutoff_len], "labels": r["labels"][i:i + data.cutoff_len]}
                for r in rows for i in range(0, len(r["input_ids"]), data.cutoff_len)]
    else:
        template = resolve_template(data.template, tokenizer)
        settings = SftSettings(data.cutoff_len, data.train_on_prompt, data.mask_history,
                               getattr(template, "efficient_eos", False), tokenizer.eos_token_id)
        encode = partial(_encode_examples, template=template, tokenizer=tokenizer, settings=settings,
                         default_system=data.default_system, enable_thinking=data.enable_thinking is not False,
                         cfg=cfg, processor=processor)
        rows = []
        # a processor stays in this process: images are expanded one example at a time
        for row in map_batches(encode, examples, batch, workers if processor is None else 1):
            if any(label != IGNORE_INDEX for label in row["labels"]):
                rows.append(row)
            else:
                stats.dropped_examples += 1  # nothing left to learn after truncation
    if data.packing and any(r.get("images") for r in rows):
        raise DataFormatError("packing is not supported with images; set packing: false", field="packing")
    if data.packing:
        packed = pack_bins(rows, data.cutoff_len)
        return packed if data.neat_packing else [{k: r[k] for k in ("input_ids", "labels")} for r in packed]
    return rows


def _expand_images(example: Example, cfg: RuntimeConfig, template: Any, processor: Any) -> list[str]:
    """Replace the example's ``<image>`` placeholders with the model's image tokens; returns the image paths."""
    if not example.images:
        return []
    if processor is None:
        raise DataFormatError(f"rows have images but {cfg.model.model_name_or_path} is not a vision-language model "
                              "(its config has no vision_config)", field="images")
    try:
        return expand_example(example, template, processor, cfg.data.media_dir or cfg.data.dataset_dir,
                              cfg.data.image_max_pixels, cfg.data.image_min_pixels)
    except MediaError as exc:
        raise DataFormatError(str(exc), field="images") from None


def _check_image_tokens(row: dict[str, Any], example: Example, processor: Any, cfg: RuntimeConfig) -> None:
    """Truncation must not cut image tokens: the vision features would not match them."""
    wanted = sum(m["content"].count(processor.image_token) for m in example.messages)
    kept = row["input_ids"].count(processor.image_token_id)
    if kept != wanted:
        raise DataFormatError(f"cutoff_len {cfg.data.cutoff_len} cuts {wanted - kept} of {wanted} image tokens "
                              f"of a conversation with images {example.images}; raise cutoff_len or lower "
                              "image_max_pixels", field="cutoff_len")


def _prepare(cfg: RuntimeConfig, stage: str, tokenizer: Any, train_src: list[DatasetSource],
             eval_src: list[DatasetSource], stats: DataStats,
             processor: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    examples = _load(train_src, cfg, stage, stats)
    train_ex, eval_ex = split_eval(examples, cfg.data.val_size, cfg.training.seed)
    if eval_src:
        eval_ex = _load(eval_src, cfg, stage, stats)
    if stage in ("rm", "dpo", "kto", "ppo", "grpo"):
        return [preference_row(e) for e in train_ex], [preference_row(e) for e in eval_ex]
    return (_tokenize(train_ex, cfg, stage, tokenizer, stats, processor),
            _tokenize(eval_ex, cfg, stage, tokenizer, stats, processor) if eval_ex else [])


def _save(path: Any, train: Any, eval_: Any, stats: DataStats) -> None:
    """Write the cache atomically: a temporary sibling directory renamed into place."""
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    train.save_to_disk(str(tmp / "train"))
    if eval_ is not None:
        eval_.save_to_disk(str(tmp / "eval"))
    (tmp / "stats.json").write_text(json.dumps(stats.__dict__))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _from_cache(path: Any) -> tuple[Any, Any, DataStats]:
    from datasets import load_from_disk

    stats = DataStats(**json.loads((path / "stats.json").read_text()))
    eval_ = load_from_disk(str(path / "eval")) if (path / "eval").exists() else None
    return load_from_disk(str(path / "train")), eval_, stats


def build_datasets(cfg: RuntimeConfig, tokenizer: Any, stage: str | None = None,
                   processor: Any = None) -> DatasetBundle:
    """Datasets and collator for ``stage`` (default ``cfg.stage``); see the module docstring for their shape.

    ``processor``: a vision-language model's processor (kubetune.model.vision.load_processor); rows with images
    need one.

    Tokenized results are cached under a key of (data files, registry entries, tokenizer, template, settings);
    with several processes the main one (per node unless data_shared_file_system) prepares, the others load.
    Raises DataFormatError naming file, row and field for malformed data (unless bad_rows: skip).
    """
    from datasets import Dataset

    stage = stage or cfg.stage
    train_src = resolve_sources(cfg.data.dataset or [], cfg.data)
    eval_src = resolve_sources(cfg.data.eval_dataset or [], cfg.data)
    path = cache_dir(cfg, cache_key(cfg, stage, train_src, eval_src, tokenizer, processor))
    with main_process_first(local=not cfg.data.data_shared_file_system) as main:
        if (path / "stats.json").exists() and not (cfg.data.overwrite_cache and main):
            train, eval_, stats = _from_cache(path)
            stats.from_cache = True
        else:
            stats = DataStats(cache_path=str(path))
            train_rows, eval_rows = _prepare(cfg, stage, tokenizer, train_src, eval_src, stats, processor)
            if not train_rows:
                raise DataFormatError(f"no training examples left from {', '.join(cfg.data.dataset or [])} "
                                      f"({stats.dropped_examples} had no answer token left within cutoff_len "
                                      f"{cfg.data.cutoff_len}); raise cutoff_len", field="cutoff_len")
            train = Dataset.from_list(train_rows)
            eval_ = Dataset.from_list(eval_rows) if eval_rows else None
            stats.train_rows, stats.eval_rows = len(train_rows), len(eval_rows)
            stats.train_tokens = sum(len(r.get("input_ids", ())) for r in train_rows)
            if main:
                path.parent.mkdir(parents=True, exist_ok=True)
                _save(path, train, eval_, stats)
    skipped = sum(stats.skipped_rows.values())
    if skipped:
        log.warning("skipped %d malformed rows: %s", skipped, stats.skipped_rows)
    return DatasetBundle(train, eval_, _collator(cfg, stage, tokenizer, processor), stats)


def eval_examples(cfg: RuntimeConfig, stage: str | None = None) -> list[Example]:
    """The evaluation examples, untokenized: ``eval_dataset``, else the ``val_size`` rows held out of ``dataset``
    (the same rows :func:`build_datasets` holds out, for the same seed)."""
    stage = stage or cfg.stage
    stats = DataStats()
    eval_src = resolve_sources(cfg.data.eval_dataset or [], cfg.data)
    if eval_src:
        return _load(eval_src, cfg, stage, stats)
    return split_eval(_load(resolve_sources(cfg.data.dataset or [], cfg.data), cfg, stage, stats),
                      cfg.data.val_size, cfg.training.seed)[1]


def _collator(cfg: RuntimeConfig, stage: str, tokenizer: Any, processor: Any = None) -> Any:
    if stage not in ("pt", "sft"):
        return None
    if cfg.data.neat_packing:
        return FlatteningCollator()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if processor is not None and stage == "sft":
        return MultimodalCollator(PaddingCollator(pad_token_id=pad), processor, cfg.data.image_max_pixels,
                                  cfg.data.image_min_pixels)
    return PaddingCollator(pad_token_id=pad)
