"""`kubetune stage`: download s3:// inputs into the mirror, run a command, upload its s3:// output.

    kubetune stage --in s3://data/train.jsonl --in s3://models/base                 # an init container
    kubetune stage --out s3://models/team-a/run-1a2b3c4d -- kubetune train CONFIG    # around the main command

The output is uploaded only when the command succeeded, and on a multi-node job only by node rank 0 (the one
that writes it); the manifest goes last. Endpoint, region and credentials come from the environment (botocore's
``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ...). Exit code: the command's, or 1 when staging
failed (the message names the URI).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from kubetune.uris import POD_S3_ROOT, UriError

RUNS_A_COMMAND = True  # the CLI hands everything after `--` over as args.command


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("--in", dest="inputs", action="append", default=[], metavar="URI",
                        help="an s3:// location to download before the command (repeatable)")
    parser.add_argument("--out", dest="output", metavar="URI", help="the s3:// location to upload after it")
    parser.add_argument("--root", default=POD_S3_ROOT, help=f"the local mirror (default {POD_S3_ROOT})")
    parser.set_defaults(command=[])
    parser.epilog = "the command to run follows --"


def uploads_here(env: dict[str, str]) -> bool:
    """Only node rank 0 of a multi-node job uploads (every node would upload the same files)."""
    return env.get("PET_NODE_RANK", "0") in ("", "0")


def _run(command: list[str]) -> int:
    child = subprocess.Popen(command)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: child.send_signal(number))
    return child.wait()


def run(args: argparse.Namespace, command: str) -> int:
    del command
    from kubetune.storage.s3 import StorageError
    from kubetune.storage.staging import Mirror, stage_in, stage_out

    mirror = Mirror(Path(args.root))
    argv = list(args.command)
    try:
        stage_in(mirror, args.inputs, say=_say)
        if args.output:
            mirror.path(args.output).mkdir(parents=True, exist_ok=True)
    except (StorageError, UriError) as exc:
        print(f"kubetune stage: {exc}", file=sys.stderr)
        return 1
    code = _run(argv) if argv else 0
    if code != 0 or not args.output or not uploads_here(dict(os.environ)):
        return code
    try:
        stage_out(mirror, args.output, say=_say)
    except (StorageError, UriError) as exc:
        print(f"kubetune stage: {exc}", file=sys.stderr)
        return 1
    return 0


def _say(message: str) -> None:
    print(message, flush=True)
