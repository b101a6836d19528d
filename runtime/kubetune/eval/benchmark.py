"""A multiple-choice benchmark in LLaMA-Factory's local layout, read into typed rows. Torch-free.

Layout (MMLU / CMMLU / C-Eval style)::

    <task_dir>/<benchmark>/mapping.json         {"<subject>": {"name": "<display name>", "category": "STEM"}, ...}
    <task_dir>/<benchmark>/<split>/<subject>.jsonl   one {"question", "A", "B", "C", "D", "answer"} per line
    <task_dir>/<benchmark>/<split>/<subject>.csv     the same columns with a header row, or MMLU's headerless
                                                     question,A,B,C,D,answer rows

``dev`` holds the solved examples put before each question (n-shot); the scored split is the task's suffix.
Rows may have two to any number of options, named by consecutive letters from A.
"""

from __future__ import annotations

import csv
import json
import string
from dataclasses import dataclass
from pathlib import Path

FEWSHOT_SPLIT = "dev"


class BenchmarkError(ValueError):
    """A benchmark folder or row that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Question:
    question: str
    options: tuple[str, ...]  # option texts in letter order (A, B, ...)
    answer: str  # the right letter

    @property
    def letters(self) -> str:
        return string.ascii_uppercase[: len(self.options)]


@dataclass(frozen=True)
class Subject:
    key: str
    name: str
    category: str
    questions: tuple[Question, ...]
    examples: tuple[Question, ...]  # the dev split, for n-shot prompts


def _row(raw: dict[str, str], where: str) -> Question:
    options = []
    for letter in string.ascii_uppercase:
        if letter not in raw:
            break
        options.append(str(raw[letter]))
    answer = str(raw.get("answer", "")).strip()
    if "question" not in raw or len(options) < 2:
        raise BenchmarkError(f"{where}: expected the columns question, A, B (, C, D ...) and answer")
    if answer not in string.ascii_uppercase[: len(options)]:
        raise BenchmarkError(f"{where}: answer {answer!r} is not one of the option letters "
                             f"{string.ascii_uppercase[: len(options)]}")
    return Question(str(raw["question"]), tuple(options), answer)


def _read_jsonl(path: Path) -> list[Question]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise BenchmarkError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise BenchmarkError(f"{path}:{number}: expected a JSON object")
        rows.append(_row(raw, f"{path}:{number}"))
    return rows


def _read_csv(path: Path) -> list[Question]:
    with path.open(encoding="utf-8", newline="") as f:
        table = list(csv.reader(f))
    if not table:
        return []
    header = table[0]
    if "question" in header:
        records = [dict(zip(header, r, strict=False)) for r in table[1:]]
        first = 2
    else:  # MMLU's own files: question, options..., answer, no header
        records = [{"question": r[0], **dict(zip(string.ascii_uppercase, r[1:-1], strict=False)), "answer": r[-1]}
                   for r in table]
        first = 1
    return [_row(rec, f"{path}:{first + i}") for i, rec in enumerate(records)]


def read_split(folder: Path, split: str, subject: str) -> list[Question]:
    """The rows of one subject's split, or [] when the file does not exist."""
    for suffix, reader in ((".jsonl", _read_jsonl), (".csv", _read_csv)):
        path = folder / split / f"{subject}{suffix}"
        if path.is_file():
            return reader(path)
    return []


def load_benchmark(task_dir: str | Path, benchmark: str, split: str) -> list[Subject]:
    """Every subject of ``benchmark`` that has rows in ``split``, in mapping.json order.

    Raises BenchmarkError when the folder or mapping.json is missing or malformed, or no subject has rows.
    """
    folder = Path(task_dir) / benchmark
    mapping_file = folder / "mapping.json"
    if not mapping_file.is_file():
        raise BenchmarkError(f"{mapping_file}: not found; a benchmark folder holds mapping.json "
                             "({subject: {name, category}}) and <split>/<subject>.jsonl files")
    try:
        mapping = json.loads(mapping_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BenchmarkError(f"{mapping_file}: not JSON: {exc}") from None
    subjects = []
    for key, info in mapping.items():
        if not isinstance(info, dict) or "category" not in info:
            raise BenchmarkError(f"{mapping_file}: subject {key!r}: expected {{\"name\": ..., \"category\": ...}}")
        questions = read_split(folder, split, key)
        if questions:
            subjects.append(Subject(key, str(info.get("name", key)), str(info["category"]), tuple(questions),
                                    tuple(read_split(folder, FEWSHOT_SPLIT, key))))
    if not subjects:
        raise BenchmarkError(f"{folder}: no subject of mapping.json has rows in {folder / split}/")
    return subjects
