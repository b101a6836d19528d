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
    train_loss: float | None
    resumed_from: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
