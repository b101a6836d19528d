"""Generation benchmarks: greedy answers to instructions scored against reference answers. Pure except the
file I/O of :func:`read_references` / :func:`write_generation_results` and the model in :func:`generate_answers`.

The dataset is a local jsonl of alpaca rows (``{"instruction", "input", "output"}``); the prompt is the
instruction (and input on the next line, as the alpaca format builds the user turn), rendered by the model's chat
template. Two scores, in percent with two decimals like the multiple-choice accuracy:

- ``exact_match``: the answer, stripped of surrounding whitespace, equals the stripped reference;
- ``f1``: word F1 (SQuAD style: the multiset overlap of lower-cased whitespace-separated words), averaged.

``exact_match`` is the benchmark's main score.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.eval.benchmark import BenchmarkError
from kubetune.eval.results import percent, write_result_files


@dataclass(frozen=True)
class Reference:
    prompt: str  # the user turn
    answer: str


@dataclass(frozen=True)
class GenerationResult:
    task: str
    references: tuple[Reference, ...]
    predictions: tuple[str, ...]

    @property
    def correct(self) -> int:
        return sum(exact_match(p, r.answer) for p, r in zip(self.predictions, self.references, strict=True))

    @property
    def exact_match(self) -> float:
        return percent(self.correct, len(self.references))

    @property
    def f1(self) -> float:
        total = sum(word_f1(p, r.answer) for p, r in zip(self.predictions, self.references, strict=True))
        return round(100.0 * total / len(self.references), 2) if self.references else 0.0

    @property
    def score(self) -> float:
        """The main score: exact match in percent."""
        return self.exact_match


def exact_match(prediction: str, reference: str) -> bool:
    return prediction.strip() == reference.strip()


def word_f1(prediction: str, reference: str) -> float:
    """Word-level F1 in [0, 1]: two empty texts agree (1.0), one empty text scores 0."""
    pred, ref = prediction.lower().split(), reference.lower().split()
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def read_references(path: str | Path) -> list[Reference]:
    """The rows of an alpaca jsonl. Raises BenchmarkError naming the file and line of a bad row."""
    file = Path(path)
    if not file.is_file():
        raise BenchmarkError(f"{file}: not found; a generation benchmark is a jsonl of "
                             '{"instruction", "input", "output"} rows')
    rows = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise BenchmarkError(f"{file}:{number}: not JSON: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("instruction"), str) \
                or not isinstance(raw.get("output"), str):
            raise BenchmarkError(f"{file}:{number}: expected an object with string fields instruction and output "
                                 "(input optional)")
        query = raw.get("input") or ""
        rows.append(Reference(f"{raw['instruction']}\n{query}" if query else raw["instruction"], raw["output"]))
    if not rows:
        raise BenchmarkError(f"{file}: no rows")
    return rows


def generate_answers(model: Any, tokenizer: Any, references: Sequence[Reference], *, template: str | None,
                     max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers to each reference's prompt, cut at the template's stop tokens."""
    from kubetune.eval.predict import generate, until_stop
    from kubetune.model.chatformat import render_prompt, stop_token_ids

    prompts = [render_prompt(tokenizer, [{"role": "user", "content": r.prompt}], template=template)
               for r in references]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(tokenizer, template, model.generation_config.eos_token_id)
    kwargs = {"do_sample": False, "num_beams": 1, "max_new_tokens": max_new_tokens, "pad_token_id": pad_id,
              "eos_token_id": list(stops)}
    return [tokenizer.decode(until_stop(ids, stops), skip_special_tokens=True).strip()
            for ids in generate(model, prompts, kwargs, batch_size)]


def table(result: GenerationResult) -> str:
    return "\n".join([result.task,
                      f"{'exact_match':>24}: {result.exact_match:6.2f}  ({result.correct}/{len(result.references)})",
                      f"{'f1':>24}: {result.f1:6.2f}"])


def to_json(result: GenerationResult) -> dict:
    """results.json: the scores and every answer with its reference."""
    return {
        "task": result.task,
        "score": result.score,
        "exact_match": result.exact_match,
        "f1": result.f1,
        "correct": result.correct,
        "total": len(result.references),
        "predictions": [{"prompt": r.prompt, "predict": p, "label": r.answer, "exact_match": exact_match(p, r.answer)}
                        for p, r in zip(result.predictions, result.references, strict=True)],
    }


def write_generation_results(result: GenerationResult, save_dir: str | Path) -> Path:
    """Write ``results.json`` and ``results.log`` into ``save_dir`` (created; must not exist)."""
    return write_result_files(save_dir, to_json(result), table(result))
