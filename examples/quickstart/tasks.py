"""The quickstart's synthetic instruction task: word-list transformations a tiny model can learn in minutes.

A question names an operation and 3 to 5 words (``reverse: water time house``); the answer is the words after
the operation (``house time water``). The words are single tokens of the committed tokenizer, so the model learns
to move tokens around rather than to spell. Questions are drawn with a fixed seed; the held-out questions never
occur in the training set, so held-out accuracy measures what the model learned, not what it memorised.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path

WORDS = (
    "animal answer back boy day earth father hand home house land light line man mother name number part people "
    "picture place point port question sentence side sound system thing time tool water way word work world year"
).split()

OPERATIONS: dict[str, Callable[[list[str]], list[str]]] = {
    "reverse": lambda words: words[::-1],
    "sort": sorted,
}
MIN_WORDS, MAX_WORDS = 3, 5


def make_question(rng: random.Random, operations: Iterable[str] = OPERATIONS) -> tuple[str, str]:
    """One (question, answer) pair."""
    operation = rng.choice(sorted(operations))
    words = [rng.choice(WORDS) for _ in range(rng.randint(MIN_WORDS, MAX_WORDS))]
    return f"{operation}: {' '.join(words)}", " ".join(OPERATIONS[operation](words))


def make_split(count: int, seed: int, exclude: set[str] | None = None) -> list[dict[str, str]]:
    """``count`` distinct alpaca rows (instruction, input, output) whose questions are not in ``exclude``."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    rows: list[dict[str, str]] = []
    while len(rows) < count:
        question, answer = make_question(rng)
        if question in seen:
            continue
        seen.add(question)
        rows.append({"instruction": question, "input": "", "output": answer})
    return rows


def write_jsonl(rows: Iterable[dict[str, str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_datasets(data_dir: Path, train_size: int, heldout_size: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``train.jsonl`` and ``heldout.jsonl`` (disjoint questions) into ``data_dir``."""
    heldout = make_split(heldout_size, seed=seed + 1)
    train = make_split(train_size, seed=seed, exclude={row["instruction"] for row in heldout})
    return write_jsonl(train, data_dir / "train.jsonl"), write_jsonl(heldout, data_dir / "heldout.jsonl")
