"""Accuracy per subject, per category and overall, the printed table and the results files. Pure except
:func:`write_result_files`.

Category and overall accuracy count questions (a subject with more questions weighs more), as LLaMA-Factory
does. Scores are percentages (0-100) with two decimals, the scale LLaMA-Factory prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AVERAGE = "Average"


@dataclass(frozen=True)
class SubjectResult:
    key: str
    name: str
    category: str
    predictions: tuple[str, ...]
    answers: tuple[str, ...]

    @property
    def correct(self) -> int:
        return sum(p == a for p, a in zip(self.predictions, self.answers, strict=True))


@dataclass(frozen=True)
class BenchmarkResult:
    task: str
    subjects: tuple[SubjectResult, ...]
    categories: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """Overall accuracy in percent (the "Average" row)."""
        return self.categories[AVERAGE]


def percent(correct: int, total: int) -> float:
    return round(100.0 * correct / total, 2) if total else 0.0


def summarize(task: str, subjects: list[SubjectResult]) -> BenchmarkResult:
    """Per-category and overall ("Average") accuracy of ``subjects``; categories in order of first appearance."""
    tally: dict[str, list[int]] = {}
    for s in subjects:
        for key in (s.category, AVERAGE):
            counts = tally.setdefault(key, [0, 0])
            counts[0] += s.correct
            counts[1] += len(s.answers)
    categories = {k: percent(c, n) for k, (c, n) in tally.items() if k != AVERAGE}
    categories[AVERAGE] = percent(*tally[AVERAGE]) if subjects else 0.0
    return BenchmarkResult(task, tuple(subjects), categories)


def table(result: BenchmarkResult) -> str:
    """The printed score table: one line per category, then Average, then subjects (accuracy, questions)."""
    lines = [f"{result.task}"]
    lines += [f"{name:>24}: {score:6.2f}" for name, score in result.categories.items()]
    lines.append("subjects:")
    lines += [f"{s.name:>24}: {percent(s.correct, len(s.answers)):6.2f}  ({s.correct}/{len(s.answers)})"
              for s in result.subjects]
    return "\n".join(lines)


def to_json(result: BenchmarkResult) -> dict:
    """results.json: the scores and every prediction (subject -> question index -> letter)."""
    return {
        "task": result.task,
        "score": result.score,
        "categories": result.categories,
        "subjects": {s.key: {"name": s.name, "category": s.category, "accuracy": percent(s.correct, len(s.answers)),
                             "correct": s.correct, "total": len(s.answers)} for s in result.subjects},
        "predictions": {s.key: {str(i): p for i, p in enumerate(s.predictions)} for s in result.subjects},
    }


def write_results(result: BenchmarkResult, save_dir: str | Path) -> Path:
    """Write ``results.json`` and ``results.log`` (the table) into ``save_dir`` (created; must not exist)."""
    return write_result_files(save_dir, to_json(result), table(result))


def write_result_files(save_dir: str | Path, payload: dict[str, Any], table_text: str) -> Path:
    """Write ``payload`` as ``results.json`` and ``table_text`` as ``results.log`` into a new ``save_dir``."""
    out = Path(save_dir)
    out.mkdir(parents=True, exist_ok=False)
    (out / "results.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "results.log").write_text(table_text + "\n", encoding="utf-8")
    return out
