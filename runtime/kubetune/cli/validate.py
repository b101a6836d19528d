"""`kubetune validate FILE...`: report every problem with file, line and field path; exit 1 if any."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from kubetune.api.documents import validate_file


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("files", nargs="+", help="kubetune resources or runtime configs (YAML)")


def run(args: argparse.Namespace, command: str) -> int:
    del command
    _register_runtime_config()
    failed = 0
    for path in args.files:
        errors = validate_file(path)
        for err in errors:
            print(err, file=sys.stderr)
        if errors:
            failed += 1
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _register_runtime_config() -> None:
    """Runtime and evaluation configs are validated by their own layers when they are installed."""
    for module in ("kubetune.config.documents", "kubetune.eval.documents"):  # each registers its validator
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(module)
