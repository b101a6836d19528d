"""Keys of stage ``grpo`` (group relative policy optimisation on TRL's GRPOTrainer).

The names are TRL's (``GRPOConfig``) where TRL has the setting, so a TRL user reads them as they mean there;
the reward keys are kubetune's. ``reward_funcs`` entries are one of:

- ``exact_match``: 1 when the answer (the text in ``<answer>...</answer>`` when there is one, after any
  ``<think>`` block) equals the dataset's reference answer after trimming whitespace, else 0;
- ``format``: 1 when the whole completion matches ``reward_format_pattern`` (a Python regular expression,
  ``.`` matching newlines), else 0;
- ``http://...`` or ``https://...``: an HTTP scorer, ``POST {"messages": [...]}`` answering ``{"reward": x}``
  (the protocol of PPO's ``reward_model_type: api``), waiting at most ``reward_timeout`` seconds;
- ``package.module:function`` (or ``package.module.function``): a Python function with TRL's reward signature,
  ``fn(prompts, completions, answer, messages, system, **kwargs) -> list[float | None]``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from kubetune.config.base import ConfigGroup, FloatList, StrList

BUILTIN_REWARDS = ("exact_match", "format")
DEFAULT_FORMAT = r"<think>.*?</think>\s*<answer>.*?</answer>"
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*([.:][A-Za-z_]\w*)$")


def reward_kind(entry: str) -> str:
    """``builtin``, ``http`` or ``import`` for one ``reward_funcs`` entry; raises ValueError for anything else."""
    if entry in BUILTIN_REWARDS:
        return "builtin"
    if entry.startswith(("http://", "https://")):
        return "http"
    if _IMPORT_PATH.match(entry) and ("." in entry or ":" in entry):
        return "import"
    raise ValueError(f"{entry!r} is not a reward: use {' or '.join(BUILTIN_REWARDS)}, an http(s) URL, or a "
                     "Python import path such as my_pkg.rewards:score")


class GrpoConfig(ConfigGroup):
    """Settings of stage grpo; the generation keys (``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``)
    shape the sampled completions."""

    num_generations: int = Field(8, ge=2, le=1024, description="Completions sampled per prompt (the group).")
    beta: float = Field(0.0, ge=0.0, description="KL penalty to the reference policy (0 loads no reference).")
    epsilon: float = Field(0.2, gt=0.0, lt=1.0, description="Clipping range of the importance ratio.")
    num_iterations: int = Field(1, ge=1, le=64, description="Optimisation passes over each generated batch.")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(
        "dapo", description="How token losses are averaged (TRL's loss_type)."
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the reward std of the group, of the batch, or not at all."
    )
    reward_funcs: StrList = Field(default_factory=list, description="Rewards: exact_match, format, a URL or an "
                                  "import path (see the module docstring).")
    reward_weights: FloatList | None = Field(None, description="Weight per reward function; default 1 each.")
    reward_format_pattern: str = Field(DEFAULT_FORMAT, description="Regular expression of the format reward.")
    reward_timeout: float = Field(60.0, gt=0.0, description="Seconds an HTTP scorer may take per completion.")

    @field_validator("scale_rewards", mode="before")
    @classmethod
    def _booleans(cls, value: object) -> object:
        # TRL and older configs write true/false for group/none.
        return {True: "group", False: "none"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _consistent(self) -> GrpoConfig:
        for i, entry in enumerate(self.reward_funcs):
            try:
                reward_kind(entry)
            except ValueError as exc:
                raise ValueError(f"reward_funcs[{i}]: {exc}") from None
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values for {len(self.reward_funcs)} "
                             "reward_funcs; give one weight per reward function")
        try:
            re.compile(self.reward_format_pattern)
        except re.error as exc:
            raise ValueError(f"reward_format_pattern is not a regular expression: {exc}") from None
        return self
