"""`kubetune` entry point: a table of commands, each in its own module, imported only when it runs.

Keeping the table lazy keeps `kubetune crds` or `kubetune validate` fast and torch-free, and lets the operator
image ship without the training stack. A command module provides ``add_arguments(parser)`` and
``run(args) -> int``; it turns the parsed arguments into typed config at once and passes only that on.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from kubetune.quiet import silence_known_deprecations


@dataclass(frozen=True)
class Command:
    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "train": Command("kubetune.train.cli", "train a model from a runtime config or LLaMA-Factory YAML"),
    "export": Command("kubetune.export.cli", "merge LoRA adapters and quantize a model"),
    "serve": Command("kubetune.serve.cli", "serve a model through an OpenAI-compatible API"),
    "api": Command("kubetune.serve.cli", "alias of serve"),
    "adapters": Command("kubetune.serve.adapters_cli", "load and unload LoRA adapters in a running vLLM server"),
    "chat": Command("kubetune.chat.cli", "chat with a model in the terminal"),
    "eval": Command("kubetune.eval.cli", "score a model on a multiple-choice benchmark (MMLU-style)"),
    "run": Command("kubetune.local.cli", "run FineTuneJob/ModelExport/InferenceService files on this machine"),
    "stage": Command("kubetune.storage.cli", "download s3:// inputs, run a command, upload its s3:// output"),
    "convert": Command("kubetune.config.convert", "print the FineTuneJob equivalent to a LLaMA-Factory YAML"),
    "validate": Command("kubetune.cli.validate", "validate kubetune resources and runtime configs"),
    "crds": Command("kubetune.cli.crds", "print the CustomResourceDefinitions"),
    "operator": Command("kubetune_operator.cli", "run the Kubernetes operator"),
    "env": Command("kubetune.cli.info", "print versions of the stack and the accelerators found"),
    "version": Command("kubetune.cli.info", "print the kubetune version"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetune",
        description="LLM fine-tuning as a declarative Kubernetes service, and its runtime.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<10} {c.help}" for name, c in COMMANDS.items()),
    )
    parser.add_argument("command", nargs="?", help="one of the commands below")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    command = COMMANDS.get(name)
    if command is None:
        _top_parser().error(f"unknown command {name!r}")
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        if exc.name and (command.module == exc.name or command.module.startswith(exc.name + ".")):
            print(f"kubetune {name}: not available yet in this build ({command.module} is missing)",
                  file=sys.stderr)
            return 2
        print(f"kubetune {name}: needs the Python package {exc.name!r}; install the matching extra, e.g. "
              f"pip install 'kubetune[train,serve]'", file=sys.stderr)
        return 2
    silence_known_deprecations()
    parser = argparse.ArgumentParser(prog=f"kubetune {name}", description=command.help)
    module.add_arguments(parser, name)
    passed: list[str] | None = None
    if getattr(module, "RUNS_A_COMMAND", False) and "--" in rest:  # `kubetune stage --out URI -- CMD ARGS...`
        rest, passed = rest[:rest.index("--")], rest[rest.index("--") + 1:]
    args = parser.parse_intermixed_args(rest)  # `kubetune train cfg.yaml --no-progress k=v`
    if passed is not None:
        args.command = passed
    return int(module.run(args, name) or 0)


if __name__ == "__main__":
    sys.exit(main())
