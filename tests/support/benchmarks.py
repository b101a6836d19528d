"""Write small multiple-choice benchmarks in LLaMA-Factory's local layout for the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

# subject -> (category, test rows, dev rows); a row is (question, options, answer letter)
Rows = list[tuple[str, list[str], str]]


def write_benchmark(task_dir: Path, name: str, subjects: dict[str, tuple[str, Rows, Rows]]) -> Path:
    folder = task_dir / name
    (folder / "test").mkdir(parents=True, exist_ok=True)
    (folder / "dev").mkdir(parents=True, exist_ok=True)
    mapping = {key: {"name": key.replace("_", " ").title(), "category": cat} for key, (cat, _, _) in subjects.items()}
    (folder / "mapping.json").write_text(json.dumps(mapping))
    for key, (_, test, dev) in subjects.items():
        for split, rows in (("test", test), ("dev", dev)):
            lines = [json.dumps({"question": q, **dict(zip("ABCD", opts, strict=False)), "answer": a})
                     for q, opts, a in rows]
            (folder / split / f"{key}.jsonl").write_text("\n".join(lines) + "\n")
    return task_dir


ASTRONOMY: Rows = [
    ("Which planet is largest?", ["Mars", "Jupiter", "Venus", "Earth"], "B"),
    ("What orbits the Earth?", ["The Moon", "The Sun", "Mars", "Venus"], "A"),
    ("How many moons has Mars?", ["One", "Three", "Two", "None"], "C"),
]
HISTORY: Rows = [
    ("Who built the pyramids?", ["Romans", "Greeks", "Vikings", "Egyptians"], "D"),
    ("Which came first?", ["Bronze age", "Iron age"], "A"),
]
DEV: Rows = [("What is 1 + 1?", ["Two", "Three", "Four", "Five"], "A")]


def small_benchmark(task_dir: Path) -> Path:
    """Two subjects in two categories: astronomy (STEM, 3 questions), world history (Humanities, 2)."""
    return write_benchmark(task_dir, "tiny", {"astronomy": ("STEM", ASTRONOMY, DEV),
                                              "world_history": ("Humanities", HISTORY, DEV)})
