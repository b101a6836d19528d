"""Check a config's data before anything heavy loads: registry entries, files, formats, columns, per stage.

Training imports torch and the trainers, loads the tokenizer and the model before it tokenizes, so a typo in a
column name used to surface after tens of seconds, as a traceback. ``check_data`` reads every local dataset the
way ``build_datasets`` will (same registry, same row conversion for the stage, same ``bad_rows`` policy) and
raises the first problem with its file, row and field. It imports neither torch nor ``datasets``.

Hub datasets (``hf_hub_url``) are not read here: only their registry entry is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubetune.config.runtime import RuntimeConfig
from kubetune.data.formats import DataFormatError
from kubetune.data.sources import load_examples, resolve_sources


@dataclass
class DataCheck:
    """Usable rows per local dataset (after ``bad_rows: skip``), and the datasets left for training to fetch."""

    rows: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    remote: list[str] = field(default_factory=list)


def check_data(cfg: RuntimeConfig) -> DataCheck:
    """Read every local dataset of ``cfg`` as training will.

    Raises:
        DataFormatError: an unknown dataset, a missing file, a malformed row (file, row, field), or a dataset left
            with no usable row.
    """
    data = cfg.data
    if not data.dataset:
        raise DataFormatError("no dataset to train on; set dataset: <name>[,<name>...]", field="dataset")
    result = DataCheck()
    skip = data.bad_rows == "skip"
    for source in resolve_sources([*data.dataset, *(data.eval_dataset or [])], data):
        if source.path is None:
            result.remote.append(source.name)
            continue
        loaded = load_examples(source, cfg.stage, skip_bad_rows=skip, seed=cfg.training.seed)
        result.rows[source.name], result.skipped[source.name] = len(loaded.examples), loaded.skipped
        if not loaded.examples:
            why = (f"all {loaded.skipped} rows are malformed (first: {loaded.first_error})" if loaded.skipped
                   else "it holds no rows")
            raise DataFormatError(f"dataset {source.name!r} has nothing to train on: {why}", file=str(source.path))
    return result
