"""The stage table: ``cfg.stage`` selects the module that trains. Every entry has the same signature,
``run(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult``; preference stages add their rows here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from kubetune.train.context import TrainContext, TrainResult

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig

StageRunner = Callable[["RuntimeConfig", TrainContext], TrainResult]

# stage -> module providing run(); imported only when that stage runs (a stage may pull in TRL).
STAGES: dict[str, str] = {
    "pt": "kubetune.train.pt",
    "sft": "kubetune.train.sft",
    "rm": "kubetune.train.rm",
    "dpo": "kubetune.train.dpo",
    "kto": "kubetune.train.kto",
    "ppo": "kubetune.train.ppo",
    "grpo": "kubetune.train.grpo",
}


class StageNotAvailable(ValueError):
    """The config asks for a stage this build cannot run."""


class StageConfigError(ValueError):
    """The config cannot work for this stage (checked before training; the message names the key or dataset)."""


def stage_runner(stage: str) -> StageRunner:
    """The ``run`` function of ``stage``. Raises StageNotAvailable for stages not in :data:`STAGES`."""
    if stage not in STAGES:
        raise StageNotAvailable(f"stage: {stage} is not available in this build; available: {', '.join(STAGES)}")
    runner: StageRunner = importlib.import_module(STAGES[stage]).run
    return runner


def run_stage(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Train ``cfg.stage``."""
    return stage_runner(cfg.stage)(cfg, ctx)
