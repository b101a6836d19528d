"""Training progress of a local run: into the FineTuneJob record's ``status.progress``, and onto the console.

The sink receives the runtime's progress snapshots (the same ones a training pod sends to the apiserver) and
stores them in the CRD's shape with the pod sink's own conversion (:func:`kubetune.status_reporter.status_progress`).
Without a progress bar (output is not a terminal) it also prints one line per snapshot, the way
``kubectl get finetunejobs -w`` would show it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubetune.lifecycle.progress import progress_text
from kubetune.local.status import Tracker
from kubetune.status_reporter import latest_checkpoint, status_progress


def progress_line(ref: str, progress: Mapping[str, Any]) -> str:
    """``FineTuneJob/x  step 120/600 (20%)  loss 0.812  eta 2m10s``."""
    return f"{ref:<34}  {progress_text(progress)}"


class LocalProgressSink:
    """``update(progress)`` for the trainer: keeps the record current and, when asked, prints a line."""

    def __init__(self, tracker: Tracker, output_dir: Path, output_uri: str,
                 say: Callable[[str], None] | None = None) -> None:
        self.tracker, self.output_dir, self.output_uri, self.say = tracker, output_dir, output_uri, say

    def update(self, progress: dict[str, Any]) -> None:
        fields: dict[str, Any] = {"progress": status_progress(progress)}
        checkpoint = latest_checkpoint(str(self.output_dir), self.output_uri)
        if checkpoint:
            fields["latestCheckpoint"] = checkpoint
        self.tracker.update(**fields)
        if self.say is not None:
            self.say(progress_line(self.tracker.ref, fields["progress"]))

    def evaluation(self, evaluation: dict[str, Any]) -> None:
        """``status.evaluation`` of the record, as the training pod's sink sets it on the FineTuneJob."""
        self.tracker.update(evaluation=evaluation)
