"""Checkpoints that resume can trust.

A checkpoint directory counts as complete only when it holds ``trainer_state.json`` and the completion marker
``kubetune-checkpoint.json``, which is written (atomically, after a barrier across all ranks) once every file of
the checkpoint is on disk. A process killed mid-save therefore leaves a directory without the marker, and
:func:`last_complete_checkpoint` never picks it; :func:`discard_incomplete` removes such leftovers before a run
writes the same step again.

Rotation (``save_total_limit``) runs only after the marker exists, so the newest complete checkpoint is never
deleted in favour of one that is still being written.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune.artifacts import atomic_write_text

CHECKPOINT_PREFIX = "checkpoint"
COMPLETE_MARKER = "kubetune-checkpoint.json"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    """The step number in ``checkpoint-<step>``, or None for other names."""
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def is_complete(path: Path) -> bool:
    """True when ``path`` is a checkpoint whose save finished (marker and trainer state present)."""
    return (path / COMPLETE_MARKER).is_file() and (path / TRAINER_STATE).is_file()


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """All ``checkpoint-<step>`` directories under ``output_dir``, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None when there is none."""
    complete = [p for p in list_checkpoints(output_dir) if is_complete(p)]
    return complete[-1] if complete else None


def discard_incomplete(output_dir: str | Path) -> list[Path]:
    """Delete checkpoint directories that lack the completion marker. Returns what was removed."""
    removed = [p for p in list_checkpoints(output_dir) if not is_complete(p)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def mark_complete(checkpoint_dir: str | Path, global_step: int) -> None:
    """Write the completion marker last, atomically; call only after every rank finished writing."""
    path = Path(checkpoint_dir)
    info = {"globalStep": global_step, "completedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": sorted(p.name for p in path.iterdir() if p.name != COMPLETE_MARKER)}
    atomic_write_text(path / COMPLETE_MARKER, json.dumps(info, indent=2) + "\n")


def rotate(output_dir: str | Path, keep: int | None, protect: Path | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints so that at most ``keep`` remain; never the newest or ``protect``."""
    if not keep or keep <= 0:
        return []
    complete = [p for p in list_checkpoints(output_dir) if is_complete(p)]
    protected = {complete[-1]} if complete else set()
    if protect is not None:
        protected.add(Path(protect))
    removable = [p for p in complete if p not in protected]
    excess = max(0, len(complete) - max(keep, len(protected)))
    for path in removable[:excess]:
        shutil.rmtree(path, ignore_errors=True)
    return removable[:excess]


def global_step_of(checkpoint_dir: str | Path) -> int:
    """``global_step`` recorded in a checkpoint's trainer_state.json."""
    state: dict[str, Any] = json.loads((Path(checkpoint_dir) / TRAINER_STATE).read_text())
    return int(state["global_step"])


class AtomicCheckpointMixin:
    """Mix into a transformers ``Trainer`` (or a TRL trainer) to make its checkpoints complete-or-ignored.

    The trainer's own save runs with rotation switched off; then all ranks meet at a barrier, rank 0 writes the
    completion marker and rotates among complete checkpoints only.
    """

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        args = self.args  # type: ignore[attr-defined]
        limit = args.save_total_limit
        args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
        if args.should_save:
            step = self.state.global_step  # type: ignore[attr-defined]
            folder = Path(self._get_output_dir(trial=trial)) / f"{CHECKPOINT_PREFIX}-{step}"  # type: ignore[attr-defined]
            mark_complete(folder, step)
            best = self.state.best_model_checkpoint  # type: ignore[attr-defined]
            rotate(folder.parent, limit, Path(best) if best else None)
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
