"""Evaluation in the API: benchmarks a FineTuneJob runs after training, the scores it reports, the export gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from kubetune.api.base import KubeModel
from kubetune.api.common import Uri
from kubetune.api.conditions import Reason


class BenchmarkSpec(KubeModel):
    """One multiple-choice benchmark in LLaMA-Factory's local layout, scored as `kubetune eval` scores it."""

    task: str = Field(min_length=3, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*_[A-Za-z0-9]+$",
                      description="<benchmark>_<split>, e.g. mmlu_test: taskDir/<benchmark>/ scored on <split>.")
    task_dir: Uri = Field(description="Folder holding <benchmark>/mapping.json and <split>/<subject>.jsonl files.")
    n_shot: int = Field(5, ge=0, le=32, description="Solved dev examples put before each question.")
    lang: Literal["en", "zh"] = Field("en", description="Language of the prompt's instructions.")
    batch_size: int = Field(4, ge=1, le=1024, description="Questions per forward pass.")


class EvaluationSpec(KubeModel):
    """Benchmarks scored after training; the first one is the main score (status.evaluation.score)."""

    benchmarks: list[BenchmarkSpec] = Field(min_length=1, max_length=8, description="Benchmarks to score.")
    baseline: bool = Field(False, description="Also score the base model before training (status.evaluation."
                           "baseline), to see what the run changed.")


class EvaluationStatus(KubeModel):
    """Scores of the trained model, in percent (0-100), as reported by the runtime."""

    task: str | None = Field(None, max_length=128, description="The main benchmark (the first in spec).")
    score: float | None = Field(None, ge=0, le=100, description="Accuracy on the main benchmark, in percent.")
    scores: dict[str, float] | None = Field(None, max_length=8, description="Accuracy per benchmark task.")
    baseline: dict[str, float] | None = Field(None, max_length=8,
                                              description="The base model's accuracy per task, before training.")


MinScore = Field(None, ge=0, le=100, description="Export only when the source FineTuneJob's main score "
                 "(status.evaluation.score, percent) is at least this; a lower score fails the export with "
                 "reason ScoreBelowMinimum (the run regressed), a missing score waits (WaitingForScore).")


def score_verdict(min_score: float | None, kind: str, name: str,
                  status: Mapping[str, Any] | None) -> tuple[Reason, str] | None:
    """The promotion gate (pure): None when the source may be exported, else (reason, message).

    A missing ``status.evaluation.score`` waits (``WaitingForScore``: the runtime may not have reported it yet);
    a score below ``min_score`` is final (``ScoreBelowMinimum``), as the source's spec and scores never change.
    The operator and `kubetune run` both decide with this function.
    """
    if min_score is None:
        return None
    evaluation = (status or {}).get("evaluation") or {}
    score = evaluation.get("score")
    if score is None:
        return Reason.WAITING_FOR_SCORE, (f"waiting for {kind} {name!r} to report status.evaluation.score "
                                          f"(spec.source.minScore is {min_score:g}); the FineTuneJob needs "
                                          "spec.evaluation")
    if float(score) < min_score:
        task = evaluation.get("task") or "its main benchmark"
        return Reason.SCORE_BELOW_MINIMUM, (f"{kind} {name!r} scored {float(score):g} on {task}, below "
                                            f"spec.source.minScore {min_score:g}: the run regressed and is not "
                                            "exported")
    return None
