"""Stage ``pt``: continued pre-training (next-token loss on every token of plain text, packed by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubetune.train.context import TrainContext, TrainResult
from kubetune.train.workflow import train_causal_lm

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig


def run(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Pre-train on ``cfg.data`` text datasets; the data layer packs them into ``cutoff_len`` blocks by default."""
    return train_causal_lm(cfg, ctx)
