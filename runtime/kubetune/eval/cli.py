"""`kubetune eval FILE [key=value ...]`: score a model on a multiple-choice benchmark (MMLU / CMMLU / C-Eval style).

FILE uses LLaMA-Factory's evaluation keys (``model_name_or_path``, ``adapter_name_or_path``, ``template``,
``task``, ``task_dir``, ``n_shot``, ``lang``, ``save_dir``, ``batch_size``, ``seed``); ``key=value`` overrides them.
Prints a table of accuracy per category, the average and per subject; with ``save_dir`` also writes
``results.json`` (scores and every prediction) and ``results.log`` (the table).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubetune.config.files import ConfigError, parse_overrides, read_document, validate
from kubetune.eval.config import EvalConfig

T = TypeVar("T")
R = TypeVar("R")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("file", help="evaluation config (LLaMA-Factory keys: model_name_or_path, task, task_dir, ...)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys")


def read_eval_config(file: str, overrides: list[str]) -> EvalConfig:
    """The config in ``file`` with overrides; relative task_dir / model paths stay relative to the caller."""
    doc = read_document(file)
    return validate(EvalConfig, {**doc.data, **parse_overrides(overrides)}, doc)


def run(args: argparse.Namespace, command: str) -> int:
    del command
    try:
        config = read_eval_config(args.file, args.overrides)
    except (ConfigError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if config.save_dir and Path(config.save_dir).exists():
        print(f"save_dir {config.save_dir} already exists; results are never overwritten: choose another folder",
              file=sys.stderr)
        return 2
    if config.task_type == "harness":
        from kubetune.eval.harness import run_harness

        return run_harness(config)
    if config.task_type == "generation":
        return _run_generation(config)
    return _run_choice(config)


def _score(config: EvalConfig, check: Callable[[], T], score: Callable[[Any, Any, T], R],
           show: Callable[[R], str], write: Callable[[R, str], Path]) -> int:
    """The inputs are checked before the model loads (exit 2: a bad folder or row is reported in a second), then
    the model is loaded (exit 1 when it cannot be) and scored (exit 2 for data it cannot score); the table is
    printed and, with ``save_dir``, the results are written."""
    from kubetune.artifacts import ArtifactError
    from kubetune.eval.benchmark import BenchmarkError

    try:
        inputs = check()
    except BenchmarkError as exc:
        print(f"kubetune eval: {exc}", file=sys.stderr)
        return 2
    from kubetune.eval.model import load_model
    from kubetune.model.chatformat import ChatFormatError

    try:
        model, tokenizer = load_model(config)
    except (ArtifactError, OSError, ValueError) as exc:
        print(f"kubetune eval: cannot load the model: {exc}", file=sys.stderr)
        return 1
    try:
        result = score(model, tokenizer, inputs)
    except (BenchmarkError, ChatFormatError) as exc:
        print(f"kubetune eval: {exc}", file=sys.stderr)
        return 2
    print(show(result))
    if config.save_dir:
        print(f"results in {write(result, config.save_dir)}")
    return 0


def _run_choice(config: EvalConfig) -> int:
    """`task_type: choice`: the option letter with the highest next-token logit, accuracy per subject."""
    from kubetune.eval.benchmark import load_benchmark
    from kubetune.eval.results import table, write_results
    from kubetune.eval.runner import evaluate_benchmark

    return _score(config, lambda: load_benchmark(config.task_dir, config.benchmark, config.split),
                  lambda model, tokenizer, _: evaluate_benchmark(model, tokenizer, config,
                                                                 report=lambda line: print(line, flush=True)),
                  table, write_results)


def _run_generation(config: EvalConfig) -> int:
    """`task_type: generation`: greedy answers to the dataset's instructions, exact match and word F1."""
    from kubetune.eval.generation import (
        GenerationResult,
        generate_answers,
        read_references,
        table,
        write_generation_results,
    )

    def score(model: Any, tokenizer: Any, references: list[Any]) -> GenerationResult:
        answers = generate_answers(model, tokenizer, references, template=config.template,
                                   max_new_tokens=config.max_new_tokens, batch_size=config.batch_size)
        return GenerationResult(config.task or "", tuple(references), tuple(answers))

    return _score(config, lambda: read_references(config.dataset or ""), score, table, write_generation_results)
