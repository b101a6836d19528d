"""`kubetune convert LF.yaml [key=value ...]`: print the FineTuneJob that trains like a LLaMA-Factory YAML.

Local paths become file:// URIs (absolute, relative to the current directory as LLaMA-Factory reads them),
hub ids become hf:// URIs; keys the FineTuneJob spec has no field for are carried in ``extraArgs``. The output
starts with the defaults where a FineTuneJob differs from LLaMA-Factory (:mod:`kubetune.config.mapping.defaults`):
the converted fields keep the YAML's values, a field written by hand later gets the FineTuneJob's default.
Exit codes: 0 printed, 2 config errors (``file:line: key: message``), as `kubetune train`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from kubetune.config.loader import ConfigError, load_config
from kubetune.config.mapping.defaults import differences_comment
from kubetune.config.mapping.train import finetunejob_from_runtime_config


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("config", help="LLaMA-Factory-style YAML (flat keys)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys")
    parser.add_argument("--name", help="metadata.name (default: derived from the file name)")
    parser.add_argument("--namespace", help="metadata.namespace")
    parser.add_argument("--output-uri", help="spec.output.uri (default: output_dir as a file:// URI)")


def default_name(path: str) -> str:
    """A valid Kubernetes name from a file name: llama3_lora_sft.yaml -> llama3-lora-sft."""
    name = re.sub(r"[^a-z0-9-]+", "-", Path(path).stem.lower()).strip("-")
    return name[:63].strip("-") or "finetune"


def run(args: argparse.Namespace, command: str) -> int:
    del command
    try:
        cfg = load_config(args.config, args.overrides)
        job = finetunejob_from_runtime_config(cfg, args.name or default_name(args.config),
                                              namespace=args.namespace, output_uri=args.output_uri)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"# Converted from {args.config} by kubetune convert.")
    print(differences_comment())
    sys.stdout.write(yaml.safe_dump(job.wire(), sort_keys=False))
    return 0
