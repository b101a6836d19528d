"""`kubetune train FILE.yaml [key=value ...]`: train from a runtime config (LLaMA-Factory-style keys).

The config is loaded once here and passed down typed. When the launcher environment (or ``--nproc-per-node``)
asks for more than one process, the command replaces itself with torchrun running the same command line in every
process. The data is read and checked before torch or the model loads. Exit codes: 0 trained, 2 config or data
errors (``file:line: key: message``, ``data-file:row N: field: message``), 1 training failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig
    from kubetune.train.progress import ProgressSink

# Packages register progress sinks here: an entry point is a factory ``f(cfg) -> ProgressSink | None``.
SINK_ENTRY_POINTS = "kubetune.progress_sinks"


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("config", help="runtime config YAML (LLaMA-Factory keys are accepted)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys, e.g. lora_rank=16")
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="processes on this machine (default: NPROC_PER_NODE, else one per GPU, else 1)")
    parser.add_argument("--no-progress", action="store_true",
                        help="progress as lines instead of a bar (the default when not on a terminal)")


def progress_sinks(cfg: RuntimeConfig) -> list[ProgressSink]:
    """Sinks from installed entry points, plus a JSON file sink when ``progress_file`` is set."""
    from kubetune.train.progress import JsonFileSink

    sinks: list[ProgressSink] = []
    for entry in entry_points(group=SINK_ENTRY_POINTS):
        sink = entry.load()(cfg)
        if sink is not None:
            sinks.append(sink)
    if cfg.run.progress_file:
        sinks.append(JsonFileSink(cfg.run.progress_file))
    return sinks


def _relaunch(args: argparse.Namespace) -> list[str] | None:
    import torch

    from kubetune.train.distributed import torchrun_argv

    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return torchrun_argv(os.environ, args.nproc_per_node, devices, sys.executable,
                         ["train", args.config, *args.overrides, *(["--no-progress"] if args.no_progress else [])])


def _config_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "this config cannot run here": reported without a traceback, exit code 2."""
    from kubetune.data.formats import DataFormatError
    from kubetune.model.adapters import MethodError
    from kubetune.model.loader import ModelLoadError
    from kubetune.model.patches import PatchError
    from kubetune.train.distributed import LaunchError
    from kubetune.train.outputs import OutputError
    from kubetune.train.stages import StageConfigError, StageNotAvailable

    return (LaunchError, MethodError, ModelLoadError, PatchError, OutputError, StageConfigError, StageNotAvailable,
            DataFormatError)


def data_problem(cfg: RuntimeConfig, config_file: str) -> str | None:
    """The first data problem, located, or None: checked before torch, the tokenizer or the model load."""
    from kubetune.config.loader import read_flat
    from kubetune.data.check import check_data
    from kubetune.data.formats import DataFormatError

    try:
        check_data(cfg)
    except DataFormatError as exc:
        if exc.file:
            return f"{exc} (dataset of {config_file})"
        key = exc.field.split(".")[0] if exc.field in ("dataset", "eval_dataset") else "dataset"
        line = read_flat(config_file)[1].get(key)
        return f"{config_file}{f':{line}' if line else ''}: {key}: {exc.reason}"
    return None


def _say(message: str) -> None:
    print(message, flush=True)


def run(args: argparse.Namespace, command: str) -> int:
    del command
    from kubetune.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 2
    problem = data_problem(cfg, args.config)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    from kubetune.train.context import TrainContext, loss_summary
    from kubetune.train.progress import LineSink, disable_library_progress_bars
    from kubetune.train.stages import run_stage

    main = int(os.environ.get("RANK", "0")) == 0  # torchrun's global rank; 0 when running alone
    try:
        argv = _relaunch(args)
        if argv is not None:
            print("launching: " + " ".join(argv[1:]), flush=True)
            os.execv(argv[0], argv)
        # A redrawn bar only on a terminal; redirected output (a pod's log, a file) gets one line per snapshot.
        bar = not args.no_progress and sys.stderr.isatty()
        if not bar:
            disable_library_progress_bars()
        sinks = [*progress_sinks(cfg), *([] if bar else [LineSink(_say)])] if main else []
        ctx = TrainContext(sinks=sinks, console=bar, say=_say if main else (lambda _msg: None))
        result = run_stage(cfg, ctx)
    except _config_errors() as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        traceback.print_exc()
        print(f"kubetune train: training failed: {exc}", file=sys.stderr)
        return 1
    if main:
        loss = loss_summary(result)
        print(f"done: {result.global_step} steps{', ' + loss if loss else ''}\n"
              f"{result.artifact_type} written to {result.output_dir} (manifest kubetune-artifact.json)", flush=True)
    return 0
