"""`kubetune crds`: print the generated CustomResourceDefinitions (what `crds/` holds)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from kubetune.api.crd import KINDS, crd


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("--output-dir", type=Path, help="write one file per CRD here instead of printing")


def render(kind_index: int) -> str:
    return yaml.safe_dump(crd(KINDS[kind_index]), sort_keys=False, width=120)


def file_name(kind_index: int) -> str:
    return f"kubetune.io_{KINDS[kind_index].plural}.yaml"


def run(args: argparse.Namespace, command: str) -> int:
    del command
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for i in range(len(KINDS)):
            (args.output_dir / file_name(i)).write_text(render(i))
        return 0
    print("---\n".join(render(i) for i in range(len(KINDS))), end="")
    return 0
