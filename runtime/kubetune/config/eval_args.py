"""Benchmarks a training run scores after training (and on the base model before it): the ``evaluation`` group.

``eval_benchmarks`` is the runtime form of a FineTuneJob's ``spec.evaluation.benchmarks`` (task folders already
resolved to local paths); the first benchmark is the main score. Torch-free.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kubetune.config.base import ConfigGroup


class BenchmarkRun(BaseModel):
    """One multiple-choice benchmark as `kubetune eval` scores it (its keys, without the model)."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="<benchmark>_<split>, e.g. mmlu_test.")
    task_dir: str = Field(description="Local folder holding <benchmark>/mapping.json and the split folders.")
    n_shot: int = Field(5, ge=0, description="Solved dev examples put before each question.")
    lang: Literal["en", "zh"] = Field("en", description="Language of the prompt's instructions.")
    batch_size: int = Field(4, ge=1, description="Questions per forward pass.")


class EvaluationConfig(ConfigGroup):
    """kubetune-only keys: benchmarks scored by the training run itself."""

    eval_benchmarks: list[BenchmarkRun] = Field(
        default_factory=list, description="Benchmarks scored after training; the first is the main score."
    )
    eval_baseline: bool = Field(False, description="Also score the base model before training.")
