"""Run a multiple-choice benchmark on a loaded model: prompts per subject, one forward pass per batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetune.eval.benchmark import Subject, load_benchmark
from kubetune.eval.config import EvalConfig
from kubetune.eval.prompts import TEMPLATES, build_messages, pick_shots
from kubetune.eval.results import BenchmarkResult, SubjectResult, summarize


def encode_subject(subject: Subject, tokenizer: Any, config: EvalConfig) -> list[list[int]]:
    """Token ids of every question's prompt, rendered with the model's chat template."""
    from kubetune.model.chatformat import render_prompt

    template = TEMPLATES[config.lang]
    shots = pick_shots(subject, config.n_shot, config.seed)
    return [render_prompt(tokenizer, build_messages(q, s, subject.name, template), template=config.template)
            for q, s in zip(subject.questions, shots, strict=True)]


def evaluate_benchmark(model: Any, tokenizer: Any, config: EvalConfig,
                       report: Callable[[str], None] = lambda _: None) -> BenchmarkResult:
    """Score ``model`` on ``config.task``; ``report`` gets one line per subject as it finishes.

    Raises BenchmarkError (layout or rows) and ChatFormatError (template).
    """
    from kubetune.eval.choice import choose, letter_token_ids

    subjects = load_benchmark(config.task_dir, config.benchmark, config.split)[: config.max_subjects]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    results = []
    for subject in subjects:
        prompts = encode_subject(subject, tokenizer, config)
        choices = [letter_token_ids(tokenizer, len(q.options)) for q in subject.questions]
        picks = choose(model, prompts, choices, pad_id, config.batch_size)
        predictions = tuple(q.letters[i] for q, i in zip(subject.questions, picks, strict=True))
        result = SubjectResult(subject.key, subject.name, subject.category, predictions,
                               tuple(q.answer for q in subject.questions))
        report(f"{subject.name}: {result.correct}/{len(predictions)}")
        results.append(result)
    return summarize(config.task or "", results)  # a choice config always has a task (EvalConfig checks)
