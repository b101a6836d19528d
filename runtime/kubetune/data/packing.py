"""Packing: several examples per row so no compute is spent on padding.

- ``chunk``: pre-training style: concatenate everything and cut into blocks of ``cutoff_len`` (remainder dropped).
- ``knapsack``: best-fit bins of at most ``cutoff_len`` tokens; each bin keeps ``position_ids`` that restart at 0
  per example, which is what lets the model keep packed examples apart (see collators.FlatteningCollator).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable


def chunk(rows: Iterable[dict[str, list[int]]], block: int) -> list[dict[str, list[int]]]:
    """Concatenate input_ids/labels of all rows and cut them into ``block``-token rows."""
    rows = list(rows)
    ids = [t for r in rows for t in r["input_ids"]]
    labels = [t for r in rows for t in r["labels"]]
    return [{"input_ids": ids[i:i + block], "labels": labels[i:i + block]}
            for i in range(0, len(ids) - block + 1, block)]


def knapsack(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices grouped into bins of total length <= capacity (best fit, longest first). Items longer than
    ``capacity`` must have been truncated before."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    space: list[tuple[int, int]] = []  # (free tokens, bin index), sorted
    bins: list[list[int]] = []
    for i in order:
        need = lengths[i]
        if need > capacity:
            raise ValueError(f"item {i} has {need} tokens, more than the bin size {capacity}")
        pos = bisect_left(space, (need, -1))
        if pos < len(space):
            free, b = space.pop(pos)
        else:
            free, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if free - need > 0:
            insort(space, (free - need, b))
    return [sorted(b) for b in bins]


def pack_bins(rows: list[dict[str, list[int]]], capacity: int) -> list[dict[str, list[int]]]:
    """Rows -> knapsack bins with input_ids, labels and per-example position_ids."""
    out = []
    for members in knapsack([len(r["input_ids"]) for r in rows], capacity):
        packed: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for i in members:
            packed["input_ids"] += rows[i]["input_ids"]
            packed["labels"] += rows[i]["labels"]
            packed["position_ids"] += list(range(len(rows[i]["input_ids"])))
        out.append(packed)
    return out
