"""Stage ``sft``: supervised fine-tuning on conversations (loss on the answers; prompts masked unless
``train_on_prompt``), rendered with the configured chat template by the data layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubetune.train.context import TrainContext, TrainResult
from kubetune.train.workflow import train_causal_lm

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig


def run(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Fine-tune on ``cfg.data`` (alpaca, sharegpt or openai rows) with the configured method."""
    return train_causal_lm(cfg, ctx)
