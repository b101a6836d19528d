"""Training progress for people and machines: ``progress.json`` plus pluggable sinks.

A sink is anything with ``update(progress: dict) -> None``; the training pod registers one that patches the
FineTuneJob status, a local run may register none. Updates are throttled (at most one every ``interval_s``
seconds, the first and the last always go out) so a fast loop never floods the API server. A failing sink is
reported once and never stops training.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune.artifacts import atomic_write_text
from kubetune.lifecycle.progress import progress_text

PROGRESS_NAME = "progress.json"


@runtime_checkable
class ProgressSink(Protocol):
    """Receives progress snapshots (the dict written to progress.json)."""

    def update(self, progress: dict[str, Any]) -> None: ...


def eta_seconds(elapsed: float, steps_done: int, steps_left: int) -> int | None:
    """Remaining seconds at the average pace so far; None before the first step of this run."""
    if steps_done <= 0:
        return None
    return max(0, round(elapsed / steps_done * steps_left))


def snapshot(step: int, total: int, loss: float | None, epoch: float | None, eta: int | None,
             now: datetime) -> dict[str, Any]:
    """The progress record: the shape of FineTuneJob ``status.progress`` (camelCase keys)."""
    return {
        "step": step,
        "totalSteps": total,
        "percent": round(100.0 * step / total, 1) if total else 0.0,
        "loss": None if loss is None else round(loss, 4),
        "epoch": None if epoch is None else round(epoch, 2),
        "etaSeconds": eta,
        "updatedAt": now.isoformat(timespec="seconds"),
    }


class ProgressReporter(TrainerCallback):
    """Writes ``progress.json`` (atomically) and feeds the sinks, on the main process only."""

    def __init__(self, output_dir: str | Path, sinks: Sequence[ProgressSink] = (), interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(output_dir) / PROGRESS_NAME
        self.sinks = list(sinks)
        self.interval_s = interval_s
        self.clock = clock
        self._last_sent: float | None = None
        self._loss: float | None = None
        self._started = 0.0
        self._start_step = 0
        self._broken: set[int] = set()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._started = self.clock()
        self._start_step = state.global_step
        self._publish(state, force=True)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])
        self._publish(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self._publish(state)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self._publish(state, force=True)

    def _publish(self, state: Any, force: bool = False) -> None:
        if not state.is_world_process_zero:
            return
        now = self.clock()
        if not force and self._last_sent is not None and now - self._last_sent < self.interval_s:
            return
        self._last_sent = now
        eta = eta_seconds(now - self._started, state.global_step - self._start_step,
                          state.max_steps - state.global_step)
        record = snapshot(state.global_step, state.max_steps, self._loss, state.epoch, eta, datetime.now(UTC))
        atomic_write_text(self.path, json.dumps(record) + "\n")
        for index, sink in enumerate(self.sinks):
            try:
                sink.update(record)
            except Exception as exc:  # a status sink must never stop training
                if index not in self._broken:
                    self._broken.add(index)
                    print(f"progress sink {type(sink).__name__} failed: {exc}", file=sys.stderr)


class LineSink:
    """Prints each progress snapshot as one line (``step 120/600 (20%)  loss 0.812  eta 2m10s``): progress for
    logs that are not a terminal, where a redrawn bar would leave a carriage-return soup."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def update(self, progress: dict[str, Any]) -> None:
        self.say(progress_text(progress))


class JsonFileSink:
    """Writes each progress snapshot to a JSON file of its own (``progress_file``), atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def update(self, progress: dict[str, Any]) -> None:
        atomic_write_text(self.path, json.dumps(progress) + "\n")


def disable_library_progress_bars() -> None:
    """No loading / saving bars from datasets and transformers: for output that is not a terminal, where every
    redraw would become another line of the log."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
