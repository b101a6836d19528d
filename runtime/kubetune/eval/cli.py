"""`kubetune eval FILE [key=value ...]`: score a model on a multiple-choice benchmark (MMLU / CMMLU / C-Eval style).

FILE uses LLaMA-Factory's evaluation keys (``model_name_or_path``, ``adapter_name_or_path``, ``template``,
``task``, ``task_dir``, ``n_shot``, ``lang``, ``save_dir``, ``batch_size``, ``seed``); ``key=value`` overrides them.
Prints a table of accuracy per category, the average and per subject; with ``save_dir`` also writes
``results.json`` (scores and every prediction) and ``results.log`` (the table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubetune.config.files import ConfigError, parse_overrides, read_document, validate
from kubetune.eval.config import EvalConfig


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
    if config.task_type == "generation":
        return run_generation(config)
    if config.task_type == "harness":
        from kubetune.eval.harness import run_harness

        return run_harness(config)
    from kubetune.artifacts import ArtifactError
    from kubetune.eval.benchmark import BenchmarkError, load_benchmark

    try:  # the layout is checked before the model is loaded, so a bad folder is reported in a second
        load_benchmark(config.task_dir, config.benchmark, config.split)
    except BenchmarkError as exc:
        print(f"kubetune eval: {exc}", file=sys.stderr)
        return 2
    from kubetune.eval.model import load_model
    from kubetune.eval.results import table, write_results
    from kubetune.eval.runner import evaluate_benchmark
    from kubetune.model.chatformat import ChatFormatError

    try:
        model, tokenizer = load_model(config)
    except (ArtifactError, OSError, ValueError) as exc:
        print(f"kubetune eval: cannot load the model: {exc}", file=sys.stderr)
        return 1
    try:
        result = evaluate_benchmark(model, tokenizer, config, report=lambda line: print(line, flush=True))
    except (BenchmarkError, ChatFormatError) as exc:
        print(f"kubetune eval: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    if config.save_dir:
        print(f"results in {write_results(result, config.save_dir)}")
    return 0


def run_generation(config: EvalConfig) -> int:
    """`task_type: generation`: greedy answers to the dataset's instructions, exact match and word F1."""
    from kubetune.artifacts import ArtifactError
    from kubetune.eval.benchmark import BenchmarkError
    from kubetune.eval.generation import GenerationResult, read_references

    try:  # the dataset is checked before the model is loaded
        references = read_references(config.dataset or "")
    except BenchmarkError as exc:
        print(f"kubetune eval: {exc}", file=sys.stderr)
        return 2
    from kubetune.eval.generation import generate_answers, table, write_generation_results
    from kubetune.eval.model import load_model
    from kubetune.model.chatformat import ChatFormatError

    try:
        model, tokenizer = load_model(config)
    except (ArtifactError, OSError, ValueError) as exc:
        print(f"kubetune eval: cannot load the model: {exc}", file=sys.stderr)
        return 1
    try:
        answers = generate_answers(model, tokenizer, references, template=config.template,
                                   max_new_tokens=config.max_new_tokens, batch_size=config.batch_size)
    except ChatFormatError as exc:
        print(f"kubetune eval: {exc}", file=sys.stderr)
        return 2
    result = GenerationResult(config.task or "", tuple(references), tuple(answers))
    print(table(result))
    if config.save_dir:
        print(f"results in {write_generation_results(result, config.save_dir)}")
    return 0
