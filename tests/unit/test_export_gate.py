"""The ModelExport promotion gate (spec.source.minScore) as a pure function of the source FineTuneJob's status."""

from __future__ import annotations

from kubetune.api.modelexport import ModelExport
from kubetune_operator.gate import score_gate
from tests.builders import make_modelexport

REF = ("FineTuneJob", "sft")


def scored(score: float | None) -> dict:
    return {"status": {"phase": "Succeeded", "evaluation": {"task": "mmlu_test", "score": score}}}


def test_no_minimum_no_gate():
    assert score_gate(None, REF, scored(None)) is None


def test_at_or_above_the_minimum_passes():
    assert score_gate(70, REF, scored(70)) is None and score_gate(70, REF, scored(91.5)) is None


def test_below_the_minimum_fails_for_good():
    blocked = score_gate(70, REF, scored(40.25))
    assert blocked is not None and blocked.final and blocked.reason == "ScoreBelowMinimum"
    assert blocked.message == ("FineTuneJob 'sft' scored 40.25 on mmlu_test, below spec.source.minScore 70: "
                               "the run regressed and is not exported")


def test_a_missing_score_waits():
    blocked = score_gate(70, REF, {"status": {"phase": "Succeeded"}})
    assert blocked is not None and not blocked.final and blocked.reason == "WaitingForScore"


def test_min_score_is_part_of_the_source():
    mexp = ModelExport.model_validate(make_modelexport(source={"fineTuneJobRef": {"name": "sft"}, "minScore": 70}))
    assert mexp.spec.source.min_score == 70
