"""What a stage gets besides the config (where to report) and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.train.progress import ProgressSink


def _print(message: str) -> None:
    print(message, flush=True)


@dataclass
class TrainContext:
    """Run-time surroundings of a stage.

    Attributes:
        sinks: progress sinks fed (throttled) by the main process, e.g. the FineTuneJob status reporter.
        console: show the progress bar.
        say: prints a line for people; stages call it on the main process only.
    """

    sinks: list[ProgressSink] = field(default_factory=list)
    console: bool = True
    say: Callable[[str], None] = _print


@dataclass
class TrainResult:
    """What a finished stage produced."""

    output_dir: Path
    artifact_type: str
    global_step: int
    train_loss: float | None  # the mean over the run (what transformers reports as train_loss)
    last_loss: float | None = None  # the last logged training loss
    resumed_from: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def last_logged_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The training loss of the last logging step in a Trainer's ``state.log_history`` (None when none logged)."""
    losses = [float(record["loss"]) for record in log_history if "loss" in record]
    return losses[-1] if losses else None


def loss_summary(result: TrainResult) -> str:
    """``final loss 0.0602 (mean 0.7613)``: the last logged loss, then the run's mean named as the mean."""
    parts = []
    if result.last_loss is not None:
        parts.append(f"final loss {result.last_loss:.4f}")
    if result.train_loss is not None:
        parts.append(f"(mean {result.train_loss:.4f})" if parts else f"mean loss {result.train_loss:.4f}")
    return " ".join(parts)
