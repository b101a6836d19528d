"""Combining several datasets and holding out an evaluation split. Pure functions over lists, seeded."""

from __future__ import annotations

import random
from typing import Any, Literal


def interleave(groups: list[list[Any]], probs: list[float] | None, seed: int,
               stop: Literal["first_exhausted", "all_exhausted"]) -> list[Any]:
    """Draw from the groups with the given probabilities (uniform when None).

    ``first_exhausted`` stops when a group runs out (undersampling the larger ones); ``all_exhausted``
    restarts exhausted groups until every group was seen completely once (oversampling the smaller ones).
    """
    live = [i for i, g in enumerate(groups) if g]
    if not live:
        return []
    weights = [(probs[i] if probs else 1.0) for i in live]
    rng = random.Random(seed)
    pos = dict.fromkeys(live, 0)
    done: set[int] = set()
    out: list[Any] = []
    while True:
        i = rng.choices(live, weights)[0]
        if pos[i] == len(groups[i]):
            if stop == "first_exhausted":
                return out
            done.add(i)
            if len(done) == len(live):
                return out
            pos[i] = 0
        out.append(groups[i][pos[i]])
        pos[i] += 1


def mix(groups: list[list[Any]], strategy: str, probs: list[float] | None, seed: int) -> list[Any]:
    """concat, interleave_under (first_exhausted) or interleave_over (all_exhausted)."""
    if strategy == "concat" or len(groups) == 1:
        return [x for g in groups for x in g]
    return interleave(groups, probs, seed, "first_exhausted" if strategy == "interleave_under" else "all_exhausted")


def split_eval(items: list[Any], val_size: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, eval): val_size < 1 is a fraction, >= 1 a count of rows held out (chosen at random)."""
    if not val_size:
        return items, []
    n_eval = int(val_size) if val_size >= 1 else max(1, round(len(items) * val_size))
    if n_eval >= len(items):
        raise ValueError(f"val_size {val_size} leaves no training rows out of {len(items)}")
    order = random.Random(seed).sample(range(len(items)), len(items))
    held = set(order[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [items[i] for i in sorted(held)]
