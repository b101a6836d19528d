"""Training: one module per stage (pt, sft, rm, dpo, kto, ppo) dispatched through ``kubetune.train.stages.STAGES``,
over shared model loading (``kubetune.model``), data (``kubetune.data``), checkpoints, callbacks and outputs.

``score(model_dir, conversations)`` returns the rewards a trained reward model (stage rm) gives conversations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def score(model_dir: str | Path, conversations: list[dict[str, Any]], *, base_model: str | None = None,
          template: str | None = None) -> list[float]:
    """Rewards for ``conversations`` (``{"messages": [..., assistant answer], "system"?}``) under the reward model
    in ``model_dir``; see :mod:`kubetune.train.reward`."""
    from kubetune.train.reward import score as score_with

    return score_with(model_dir, conversations, base_model=base_model, template=template)
