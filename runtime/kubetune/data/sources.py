"""The dataset registry (dataset_info.json plus inline entries) and reading rows from files, with row numbers.

Local files: json (a list, or JSON lines), jsonl, csv, parquet, txt (one row per line, column ``text``), or a
folder of files sharing one extension. hf_hub_url / ms_hub_url entries are loaded through ``datasets`` online.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from pydantic import ValidationError

from kubetune.api.yamlfile import YamlFileError, decode
from kubetune.config.data_args import DataConfig, DatasetAttr
from kubetune.data.formats import DataFormatError, Example, convert_row

log = logging.getLogger(__name__)
EXTENSIONS = ("json", "jsonl", "csv", "parquet", "txt")


@dataclass(frozen=True)
class DatasetSource:
    """A dataset to read: its registry name, entry, and local path (None for hub datasets)."""

    name: str
    attr: DatasetAttr
    path: Path | None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DataFormatError(f"duplicate key {key!r}; each dataset and field is written once")
        out[key] = value
    return out


def read_registry_file(info: Path) -> dict[str, Any]:
    """The JSON object in a dataset_info.json. Raises DataFormatError (file, line) for what is not one."""
    try:
        text = decode(info.read_bytes(), str(info))
        raw = json.loads(text, object_pairs_hook=_unique_keys)
    except YamlFileError as exc:
        raise DataFormatError(exc.message, file=str(info), row=exc.line) from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"invalid JSON: {exc.msg}", file=str(info), row=exc.lineno) from None
    except DataFormatError as exc:
        raise DataFormatError(exc.reason, file=str(info)) from None
    if not isinstance(raw, dict):
        raise DataFormatError("expected a JSON object mapping dataset names to entries", file=str(info))
    return raw


def check_inside(info: Path, name: str, file_name: str) -> None:
    """Refuse a registry ``file_name`` that leads outside the registry's folder (``..``, absolute, symlink)."""
    root = info.parent
    target = (root / file_name).resolve()
    if ".." in PurePath(file_name).parts or PurePath(file_name).is_absolute() \
            or (target != root.resolve() and root.resolve() not in target.parents):
        raise DataFormatError(f"{file_name!r} leads outside the dataset folder {root} (to {target}); "
                              "expected a file or folder inside dataset_dir", field=f"{name}.file_name",
                              file=str(info))


def load_registry(data: DataConfig) -> dict[str, DatasetAttr]:
    """Entries of ``<dataset_dir>/dataset_info.json`` (if present) overlaid with ``data.dataset_info``.

    Entries from the file are data people share: their ``file_name`` must stay inside ``dataset_dir``. Inline
    entries come from the config itself (a FineTuneJob's dataset URIs, already resolved) and may be anywhere.
    """
    registry: dict[str, DatasetAttr] = {}
    info = Path(data.dataset_dir) / "dataset_info.json"
    if info.is_file():
        for name, entry in read_registry_file(info).items():
            try:
                registry[name] = DatasetAttr.model_validate(entry)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                raise DataFormatError(str(first["msg"]).removeprefix("Value error, "),
                                      field=f"{name}.{field}".rstrip("."), file=str(info)) from None
            if registry[name].file_name:
                check_inside(info, name, str(registry[name].file_name))
    registry.update(data.dataset_info or {})
    return registry


def resolve_sources(names: list[str], data: DataConfig) -> list[DatasetSource]:
    """Registry names (or existing file paths) -> DatasetSources. Raises DataFormatError for unknown names."""
    registry = load_registry(data)
    out = []
    for name in names:
        attr = registry.get(name)
        if attr is None and Path(name).exists():
            attr = DatasetAttr(file_name=str(Path(name).resolve()),
                               formatting="text" if Path(name).suffix == ".txt" else "alpaca")
        if attr is None:
            known = ", ".join(sorted(registry)) or "none"
            raise DataFormatError(f"dataset {name!r} is not registered in "
                                  f"{Path(data.dataset_dir) / 'dataset_info.json'} (known: {known})")
        path = Path(data.dataset_dir) / attr.file_name if attr.file_name else None
        if path is not None and not path.exists():
            raise DataFormatError(f"dataset {name!r}: file {path} does not exist")
        out.append(DatasetSource(name, attr, path))
    return out


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lstrip(".") in EXTENSIONS)
    if not files or len({p.suffix for p in files}) != 1:
        raise DataFormatError(f"folder {path} must hold data files of one type ({', '.join(EXTENSIONS)})")
    return files


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"invalid JSON at line {exc.lineno}: {exc.msg}", file=str(path)) from None
        yield from enumerate(rows, start=1)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            # Handed on as the row, so bad lines can be skipped like any other bad row.
            yield lineno, DataFormatError(f"invalid JSON line: {exc.msg} (column {exc.colno})")


def read_rows(path: Path) -> Iterator[tuple[Path, int, Any]]:
    """(file, row number, row) for every row of a local file or folder. Rows are numbered from 1
    (the line number for JSON lines, csv and txt; the position in the list for a JSON array)."""
    for file in _files(path):
        kind = file.suffix.lstrip(".")
        if kind in ("json", "jsonl"):
            yield from ((file, n, row) for n, row in _json_rows(file))
        elif kind == "csv":
            with file.open(newline="", encoding="utf-8") as fh:
                yield from ((file, n, row) for n, row in enumerate(csv.DictReader(fh), start=2))
        elif kind == "txt":
            lines = file.read_text(encoding="utf-8").splitlines()
            yield from ((file, n, {"text": line}) for n, line in enumerate(lines, start=1) if line.strip())
        else:
            import pyarrow.parquet as pq

            yield from ((file, n, row) for n, row in enumerate(pq.read_table(file).to_pylist(), start=1))


def _hub_rows(attr: DatasetAttr) -> Iterator[tuple[str, int, Any]]:
    from datasets import load_dataset

    if attr.ms_hub_url:
        raise DataFormatError(f"ModelScope dataset {attr.ms_hub_url}: download it and register the local file")
    ds = load_dataset(str(attr.hf_hub_url), name=attr.subset, split=attr.split, data_dir=attr.folder,
                      revision=attr.revision)
    yield from ((f"hf://{attr.hf_hub_url}", n, row) for n, row in enumerate(ds, start=1))


@dataclass
class LoadedDataset:
    name: str
    examples: list[Example]
    skipped: int
    first_error: DataFormatError | None = None  # the first skipped row's problem, located


def load_examples(source: DatasetSource, stage: str, *, skip_bad_rows: bool = False,
                  max_samples: int | None = None, seed: int = 42) -> LoadedDataset:
    """Read and normalise every row. A bad row raises DataFormatError (file, row, field) unless
    ``skip_bad_rows``, in which case it is counted and logged once per dataset."""
    rows = read_rows(source.path) if source.path is not None else _hub_rows(source.attr)
    examples, skipped, first_error = [], 0, None
    for file, number, row in rows:
        try:
            if isinstance(row, DataFormatError):
                raise row
            examples.append(convert_row(row, source.attr, stage))
        except DataFormatError as exc:
            located = exc.at(str(file), number)
            if not skip_bad_rows:
                raise located from None
            skipped += 1
            first_error = first_error or located
    if skipped:
        log.warning("dataset %s: skipped %d malformed rows (first: %s)", source.name, skipped, first_error)
    examples = sample(examples, source.attr.num_samples, seed)
    if max_samples is not None:
        examples = examples[:max_samples]
    return LoadedDataset(source.name, examples, skipped, first_error)


def sample(items: list[Any], n: int | None, seed: int) -> list[Any]:
    """``n`` items: a shuffled subset when n <= len(items), else all items plus random repeats."""
    if n is None or not items:
        return items
    rng = random.Random(seed)
    order = rng.sample(range(len(items)), min(n, len(items)))
    order += [rng.randrange(len(items)) for _ in range(n - len(order))]
    return [items[i] for i in order]
