"""build_datasets: from a RuntimeConfig to ready-to-train datasets and a collator, tokenized once and cached.

pt/sft: datasets of ``input_ids``, ``labels`` (-100 where no loss) and, when packed neatly, ``position_ids``;
the collator pads (PaddingCollator) or flattens (FlatteningCollator, neat_packing).
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
from kubetune.data.collators import FlatteningCollator, PaddingCollator
from kubetune.data.distributed import main_process_first
from kubetune.data.formats import DataFormatError, Example
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
                     default_system: str | None, enable_thinking: bool) -> list[dict[str, list[int]]]:
    rows = []
    for e in batch:
        if default_system is not None and e.system is None:
            e.system = default_system
        rows.append(encode_example(e, template, tokenizer, settings, enable_thinking=enable_thinking))
    return rows


def _tokenize(examples: list[Example], cfg: RuntimeConfig, stage: str, tokenizer: Any,
              stats: DataStats) -> list[dict[str, list[int]]]:
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
                         default_system=data.default_system, enable_thinking=data.enable_thinking is not False)
        rows = []
        for row in map_batches(encode, examples, batch, workers):
            if any(label != IGNORE_INDEX for label in row["labels"]):
                rows.append(row)
            else:
                stats.dropped_examples += 1  # nothing left to learn after truncation
    if data.packing:
        packed = pack_bins(rows, data.cutoff_len)
        return packed if data.neat_packing else [{k: r[k] for k in ("input_ids", "labels")} for r in packed]
    return rows


def _prepare(cfg: RuntimeConfig, stage: str, tokenizer: Any, train_src: list[DatasetSource],
             eval_src: list[DatasetSource], stats: DataStats) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    examples = _load(train_src, cfg, stage, stats)
    train_ex, eval_ex = split_eval(examples, cfg.data.val_size, cfg.training.seed)
    if eval_src:
        eval_ex = _load(eval_src, cfg, stage, stats)
    if stage in ("rm", "dpo", "kto", "ppo"):
        return [preference_row(e) for e in train_ex], [preference_row(e) for e in eval_ex]
    return (_tokenize(train_ex, cfg, stage, tokenizer, stats),
            _tokenize(eval_ex, cfg, stage, tokenizer, stats) if eval_ex else [])


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


def build_datasets(cfg: RuntimeConfig, tokenizer: Any, stage: str | None = None) -> DatasetBundle:
    """Datasets and collator for ``stage`` (default ``cfg.stage``); see the module docstring for their shape.

    Tokenized results are cached under a key of (data files, registry entries, tokenizer, template, settings);
    with several processes the main one (per node unless data_shared_file_system) prepares, the others load.
    Raises DataFormatError naming file, row and field for malformed data (unless bad_rows: skip).
    """
    from datasets import Dataset

    stage = stage or cfg.stage
    train_src = resolve_sources(cfg.data.dataset or [], cfg.data)
    eval_src = resolve_sources(cfg.data.eval_dataset or [], cfg.data)
    path = cache_dir(cfg, cache_key(cfg, stage, train_src, eval_src, tokenizer))
    with main_process_first(local=not cfg.data.data_shared_file_system) as main:
        if (path / "stats.json").exists() and not (cfg.data.overwrite_cache and main):
            train, eval_, stats = _from_cache(path)
            stats.from_cache = True
        else:
            stats = DataStats(cache_path=str(path))
            train_rows, eval_rows = _prepare(cfg, stage, tokenizer, train_src, eval_src, stats)
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
    return DatasetBundle(train, eval_, _collator(cfg, stage, tokenizer), stats)


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


def _collator(cfg: RuntimeConfig, stage: str, tokenizer: Any) -> Any:
    if stage not in ("pt", "sft"):
        return None
    if cfg.data.neat_packing:
        return FlatteningCollator()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return PaddingCollator(pad_token_id=pad)
