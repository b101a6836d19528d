"""Benchmarks inside a training run (``spec.evaluation``): the base model before training, the trained one after.

The model in memory is scored on the main process, as `kubetune eval` would score the saved artifact: the same
prompts and the same choice among the option letters. Before training the trainable model still computes what the
base model computes (LoRA's B is zero, nothing is loaded from a checkpoint until ``train()``), so no second copy is
loaded for the baseline. Scores go to three places: the artifact manifest's metrics (``accuracy/<task>``,
``baseline_accuracy/<task>``), ``<output_dir>/eval/`` (one ``results.json`` + ``results.log`` per task and
``eval/results.json`` with the summary) and every sink that takes ``evaluation(status)`` (the FineTuneJob's
``status.evaluation``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kubetune.config.eval_args import BenchmarkRun
from kubetune.eval.config import EvalConfig
from kubetune.eval.results import BenchmarkResult, write_results

EVAL_DIR = "eval"
SUMMARY_NAME = "results.json"


@runtime_checkable
class EvaluationSink(Protocol):
    """Receives the run's scores in the FineTuneJob ``status.evaluation`` shape."""

    def evaluation(self, status: dict[str, Any]) -> None: ...


def eval_config(bench: BenchmarkRun, model_path: str, template: str | None) -> EvalConfig:
    """The `kubetune eval` config that scores ``bench`` (the model itself is already loaded)."""
    return EvalConfig(model_name_or_path=model_path, template=template, task=bench.task, task_dir=bench.task_dir,
                      n_shot=bench.n_shot, lang=bench.lang, batch_size=bench.batch_size)


def _prefixed(say: Callable[[str], None], task: str) -> Callable[[str], None]:
    return lambda line: say(f"eval {task}  {line}")


def score_benchmarks(model: Any, tokenizer: Any, benchmarks: Sequence[BenchmarkRun], model_path: str,
                     template: str | None, say: Callable[[str], None]) -> list[BenchmarkResult]:
    """Score a loaded model on each benchmark (eval mode for the duration; the previous mode is restored)."""
    from kubetune.eval.runner import evaluate_benchmark

    was_training = model.training
    model.eval()
    try:
        return [evaluate_benchmark(model, tokenizer, eval_config(b, model_path, template),
                                   report=_prefixed(say, b.task)) for b in benchmarks]
    finally:
        model.train(was_training)


def scores_of(results: Iterable[BenchmarkResult]) -> dict[str, float]:
    return {r.task: r.score for r in results}


def evaluation_status(scores: Mapping[str, float], baseline: Mapping[str, float] | None) -> dict[str, Any]:
    """``status.evaluation``: the main (first) task and its score, every score, and the baseline if scored."""
    task = next(iter(scores))
    status: dict[str, Any] = {"task": task, "score": scores[task], "scores": dict(scores)}
    if baseline:
        status["baseline"] = dict(baseline)
    return status


def manifest_metrics(scores: Mapping[str, float], baseline: Mapping[str, float] | None) -> dict[str, float]:
    """The scores as artifact manifest metrics."""
    return ({f"accuracy/{t}": s for t, s in scores.items()}
            | {f"baseline_accuracy/{t}": s for t, s in (baseline or {}).items()})


def write_eval_files(output_dir: Path, results: Sequence[BenchmarkResult], status: Mapping[str, Any]) -> Path:
    """``<output_dir>/eval/<task>/results.{json,log}`` and the summary ``eval/results.json``; replaces an earlier
    attempt's files (a resumed run scores again)."""
    root = output_dir / EVAL_DIR
    if root.exists():
        shutil.rmtree(root)
    for result in results:
        write_results(result, root / result.task)
    (root / SUMMARY_NAME).write_text(json.dumps(dict(status), indent=2) + "\n", encoding="utf-8")
    return root


def report(sinks: Iterable[object], status: dict[str, Any], say: Callable[[str], None]) -> None:
    """Hand ``status`` to every sink that takes it; a failing sink is reported and never fails the run."""
    for sink in sinks:
        if isinstance(sink, EvaluationSink):
            try:
                sink.evaluation(status)
            except Exception as exc:  # the artifact holds the scores either way
                say(f"warning: could not report the evaluation to {type(sink).__name__}: {exc}")


def summary_line(status: Mapping[str, Any]) -> str:
    parts = [f"{task} {score:.2f}" for task, score in status["scores"].items()]
    base = status.get("baseline") or {}
    if base:
        parts += [f"(baseline {task} {score:.2f})" for task, score in base.items()]
    return "evaluation: " + "  ".join(parts)
