"""`make demo`: train, export and serve a tiny model offline on CPU, then ask it questions it never saw.

1. Build the base model (random weights, committed tokenizer) and the datasets into the local pvc root.
2. Score the untrained base model on the held-out questions with `kubetune eval`: the "before" accuracy.
3. `kubetune run finetunejob.yaml modelexport.yaml inferenceservice.yaml`: LoRA fine-tuning, merge, serve.
4. Score the served export on the same questions with `kubetune eval` (the "after" accuracy) and ask the endpoint
   one of them through the openai client.

Both accuracies are `kubetune eval`'s generation benchmark (greedy answers, exact match; see docs/evaluation.md).

Everything lives under ``.kubetune/`` (the work dir; ``pvc://`` is ``.kubetune/pvc``). Running the demo again
reuses what finished (the FineTuneJob and ModelExport are not repeated); ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from itertools import pairwise
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from endpoint import Answer, accuracy, ask_all, free_port, serving  # noqa: E402
from prepare import BASE_MODEL, TRAIN_SIZE, prepare  # noqa: E402
from scoring import score  # noqa: E402
from tasks import OPERATIONS, read_jsonl  # noqa: E402

RESOURCES = [HERE / "finetunejob.yaml", HERE / "modelexport.yaml", HERE / "inferenceservice.yaml"]
# One thread per process: on two shared cores, torch's default of one thread per core loses far more to
# oversubscription than it gains (see bench/ and the README's figures). Set OMP_NUM_THREADS to override.
THREADS = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TOKENIZERS_PARALLELISM": "false"}


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def samples(before: list[Answer], after: list[Answer], count: int) -> str:
    lines = []
    for old, new in list(zip(before, after, strict=True))[:count]:
        mark = "ok" if new.correct else "wrong"
        lines.append(f"  {new.question!r}\n      expected {new.expected!r}\n      untrained {old.answer.strip()!r}\n"
                     f"      trained   {new.answer.strip()!r}  ({mark})")
    return "\n".join(lines)


def by_operation(before: list[Answer], after: list[Answer]) -> list[str]:
    """``reverse 0% -> 98%`` for every operation in the questions."""
    out = []
    for operation in OPERATIONS:
        pick = [i for i, a in enumerate(after) if a.question.startswith(f"{operation}:")]
        if pick:
            old, new = accuracy([before[i] for i in pick]), accuracy([after[i] for i in pick])
            out.append(f"{operation} {old:.0%} -> {new:.0%}")
    return out


def export_dir(work_dir: Path) -> Path:
    """The merged model the InferenceService serves (the ModelExport's output in its local record)."""
    record = json.loads((work_dir / "objects" / "default" / "ModelExport" / "quickstart-merged.json").read_text())
    return work_dir / "pvc" / record["status"]["output"]["uri"].removeprefix("pvc://")


def loss_curve(work_dir: Path) -> Path | None:
    found = sorted((work_dir / "pvc" / "models" / "quickstart").glob("quickstart-sft-*/training_loss.png"))
    return found[-1] if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description="kubetune offline quickstart")
    parser.add_argument("--work-dir", type=Path, default=Path(".kubetune"))
    parser.add_argument("--train-size", type=int, default=TRAIN_SIZE, help="training questions (one epoch)")
    parser.add_argument("--heldout-size", type=int, default=200, help="held-out questions asked before and after")
    parser.add_argument("--fresh", action="store_true", help="delete the work dir first")
    args = parser.parse_args()
    started = time.monotonic()
    work = args.work_dir.resolve()
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    os.environ.update(THREADS)

    marks = [("start", time.monotonic())]
    banner("1/4 base model and data (random weights, committed tokenizer, generated questions)")
    _, train, heldout_file = prepare(work / "pvc", args.train_size, args.heldout_size)
    heldout = read_jsonl(heldout_file)
    marks.append(("prepare", time.monotonic()))
    print(f"base model   pvc://{BASE_MODEL}\ntraining     {train}\nheld out     {heldout_file} "
          f"({len(heldout)} questions never seen in training)")

    banner("2/4 the untrained model answers the held-out questions (kubetune eval, task_type generation)")
    before_score, before = score(work / "pvc" / BASE_MODEL, heldout_file, work / "eval" / "untrained")
    print(f"results      {work / 'eval' / 'untrained' / 'results.json'}")
    marks.append(("untrained answers", time.monotonic()))

    banner("3/4 kubetune run finetunejob.yaml modelexport.yaml inferenceservice.yaml")
    with serving(RESOURCES, work_dir=work, service="quickstart", port=free_port()) as url:
        marks.append(("train, export, serve", time.monotonic()))
        banner(f"4/4 the trained model answers the same questions (kubetune eval on the export served at {url})")
        after_score, after = score(export_dir(work), heldout_file, work / "eval" / "trained")
        print(f"results      {work / 'eval' / 'trained' / 'results.json'}")
        served = ask_all(url, "quickstart", heldout[:1])[0]
        print(f"endpoint     {served.question!r} -> {served.answer.strip()!r}")
        marks.append(("trained answers", time.monotonic()))

    elapsed = time.monotonic() - started
    banner("result")
    print(f"held-out exact-match accuracy (greedy): untrained {before_score:.1%}  ->  trained {after_score:.1%}"
          f"  ({len(heldout)} questions)")
    print("by operation: " + "   ".join(by_operation(before, after)))
    print("sample answers:\n" + samples(before, after, 5))
    curve = loss_curve(work)
    print(f"loss curve   {curve}" if curve else "loss curve   (not found)")
    steps = "  ".join(f"{name} {end - start:.0f}s" for (_, start), (name, end) in pairwise(marks))
    print(f"elapsed      {elapsed / 60:.1f} min ({steps}; `time make demo` adds the environment)")
    print(f"records      {sys.executable.rsplit('/', 1)[0]}/kubetune run --list --work-dir {args.work_dir}")
    return 0 if after_score > before_score else 1


if __name__ == "__main__":
    sys.exit(main())
