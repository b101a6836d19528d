"""Tokenize in batches, in worker processes when asked: preprocessing_batch_size and preprocessing_num_workers.

``map_batches(fn, items, batch_size, workers)`` cuts ``items`` into batches of ``batch_size`` and applies ``fn`` to
each, in a pool of ``workers`` processes when there is more than one worker and more than one batch; the results
come back in order, so the tokenized dataset is the same for any setting.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def batches(items: Sequence[T], batch_size: int) -> list[Sequence[T]]:
    """``items`` in consecutive batches of ``batch_size`` (the last one may be shorter)."""
    return [items[i:i + batch_size] for i in range(0, len(items), batch_size)]


def map_batches(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T], batch_size: int,
                workers: int | None) -> list[R]:
    """``fn`` over the batches of ``items``, flattened in order; ``workers`` > 1 runs batches in processes.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    """
    parts = batches(items, batch_size)
    processes = min(workers or 1, len(parts))
    if processes <= 1:
        from tqdm.auto import tqdm  # disable=None: a bar on a terminal only, never redrawn into a log

        results = [fn(part) for part in tqdm(parts, desc="tokenizing", unit="batch", disable=None)]
    else:
        # fork: the workers inherit the loaded tokenizer and template instead of importing everything again.
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            results = pool.map(fn, parts)
    return [row for part in results for row in part]


def worker_pids(batch: Sequence[Any]) -> list[int]:
    """The process id that handled each item (shows where :func:`map_batches` ran a batch)."""
    import os

    return [os.getpid()] * len(batch)
