"""`kubetune run FILE...`: run FineTuneJob, ModelExport and InferenceService files on this machine.

The files are validated as by `kubetune validate`, ordered by their references and run with the runtime the pods
run. ``pvc://claim/path`` is ``<pvc-root>/claim/path``; ``file://`` and relative paths are read relative to the CR
file. An InferenceService serves in the foreground until Ctrl-C; scripts start the command in the background and
wait until the record ``<work-dir>/objects/<namespace>/InferenceService/<name>.json`` shows ``status.phase:
Ready`` (its ``status.url`` is the OpenAI base URL). ``--list`` prints what ran here, like ``kubectl get kubetune``.

Exit codes: 0 done (or served until stopped), 1 an object failed or could not start, 2 invalid files, 130 Ctrl-C
(run the same command again to continue: training resumes from its last complete checkpoint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubetune.local.workdir import DEFAULT_WORK_DIR, WorkDir


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("files", nargs="*", help="YAML files with FineTuneJob, ModelExport, InferenceService "
                        "resources (several documents per file are fine)")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR,
                        help=f"where local status records live (default {DEFAULT_WORK_DIR})")
    parser.add_argument("--pvc-root", help="directory standing in for volumes: pvc://claim/path is "
                        "PVC_ROOT/claim/path (default WORK_DIR/pvc)")
    parser.add_argument("--port", type=int, help="port of the InferenceService (default: its spec.port)")
    parser.add_argument("--host", default="127.0.0.1", help="address the InferenceService binds to "
                        "(default 127.0.0.1)")
    parser.add_argument("--api-key", help="API key for an InferenceService with spec.auth (no Secrets locally)")
    parser.add_argument("--no-progress", action="store_true",
                        help="print progress as lines instead of a progress bar (the default when not on a terminal)")
    parser.add_argument("--list", action="store_true", help="list the objects run in the work dir and exit")


def run(args: argparse.Namespace, command: str) -> int:
    del command
    from kubetune.local.context import LocalContext
    from kubetune.local.plan import PlanError, load_objects
    from kubetune.local.runner import run_objects

    work = WorkDir(Path(args.work_dir))
    if args.list:
        from kubetune.local.listing import listing

        print(listing(work.records()))
        return 0
    if not args.files:
        print("kubetune run: give one or more resource files (or --list)", file=sys.stderr)
        return 2
    ctx = LocalContext(work=work, pvc_root=Path(args.pvc_root) if args.pvc_root else work.root / "pvc",
                       host=args.host, port=args.port, api_key=args.api_key,
                       console=not args.no_progress and sys.stderr.isatty(), say=_say)
    try:
        return run_objects(load_objects(args.files), ctx)
    except PlanError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 2


def _say(message: str) -> None:
    print(message, flush=True)
