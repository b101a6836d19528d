"""Trainer callbacks for what people see: the JSON-lines trainer log and the console progress bar.

``trainer_log.jsonl`` gets one line per logging step: ``{"step", "total", "loss", "lr", "epoch", "eta",
"elapsed"}`` (plus ``grad_norm`` and eval metrics when present). On resume, lines past the checkpoint's step are
dropped first, so the log reads as one run even after a crash. Both callbacks act on the main process only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune.train.progress import eta_seconds

TRAINER_LOG = "trainer_log.jsonl"


def read_trainer_log(output_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``trainer_log.jsonl`` (empty when the file does not exist)."""
    path = Path(output_dir) / TRAINER_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_trainer_log(output_dir: str | Path, last_step: int) -> None:
    """Keep only records up to ``last_step`` (used when a run resumes from that step)."""
    path = Path(output_dir) / TRAINER_LOG
    kept = [r for r in read_trainer_log(output_dir) if int(r.get("step", 0)) <= last_step]
    if path.is_file():
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def log_record(logs: dict[str, float], step: int, total: int, elapsed: float, eta: int | None) -> dict[str, Any]:
    """One trainer-log line from the Trainer's ``logs`` dict."""
    record: dict[str, Any] = {"step": step, "total": total}
    if "loss" in logs:
        record["loss"] = round(float(logs["loss"]), 6)
    if "learning_rate" in logs:
        record["lr"] = float(logs["learning_rate"])
    if "epoch" in logs:
        record["epoch"] = round(float(logs["epoch"]), 4)
    for key, value in logs.items():
        if key not in ("loss", "learning_rate", "epoch", "total_flos") and isinstance(value, int | float):
            record[key] = value
    record["eta"] = eta
    record["elapsed"] = round(elapsed, 2)
    return record


class TrainerLogCallback(TrainerCallback):
    """Appends one JSON line per log event to ``<output_dir>/trainer_log.jsonl``."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)
        self._started = 0.0
        self._start_step = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._started = time.monotonic()
        self._start_step = state.global_step
        if state.is_world_process_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            truncate_trainer_log(self.output_dir, state.global_step)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        elapsed = time.monotonic() - self._started
        eta = eta_seconds(elapsed, state.global_step - self._start_step, state.max_steps - state.global_step)
        record = log_record(logs, state.global_step, state.max_steps, elapsed, eta)
        with (self.output_dir / TRAINER_LOG).open("a") as fh:
            fh.write(json.dumps(record) + "\n")


class ConsoleProgressCallback(TrainerCallback):
    """A tqdm bar with step/total, ETA and the latest loss; other metrics are printed above the bar.

    Replaces transformers' ProgressCallback, whose bar shows no loss and prints every log dict instead.
    """

    def __init__(self) -> None:
        self.bar: Any = None
        self._step = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                            dynamic_ncols=True)
        self._step = state.global_step

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self._step)
            self._step = state.global_step

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            postfix = {"loss": f"{logs['loss']:.4f}"}
            if "learning_rate" in logs:
                postfix["lr"] = f"{logs['learning_rate']:.2e}"
            self.bar.set_postfix(postfix, refresh=True)
        elif any(k.startswith("eval_") for k in logs):
            shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items()}
            self.bar.write(f"eval at step {state.global_step}: {shown}")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
