"""Generation benchmarks without a model: the dataset, exact match and word F1 computed by hand, the results file."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from kubetune.eval.benchmark import BenchmarkError
from kubetune.eval.config import EvalConfig
from kubetune.eval.generation import (
    GenerationResult,
    Reference,
    read_references,
    table,
    word_f1,
    write_generation_results,
)


def test_alpaca_rows_become_prompts_with_their_input(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"instruction": "reverse: a b", "input": "", "output": "b a"}\n\n'
                    '{"instruction": "Translate", "input": "chat", "output": "cat"}\n')
    assert read_references(data) == [Reference("reverse: a b", "b a"), Reference("Translate\nchat", "cat")]


@pytest.mark.parametrize(("text", "where"), [('{"instruction": "q", "output": "a"}\n{"instruction": "q"}\n', ":2:"),
                                             ("not json\n", ":1: not JSON"), ("\n", ": no rows")])
def test_bad_rows_name_file_and_line(tmp_path, text, where):
    data = tmp_path / "qa.jsonl"
    data.write_text(text)
    with pytest.raises(BenchmarkError, match=f"qa.jsonl{where}"):
        read_references(data)


def test_word_f1_by_hand():
    assert word_f1("house time water", "house time water") == 1.0
    # 2 of 3 predicted words are in the 4-word reference: P 2/3, R 2/4, F1 = 2*(2/3)*(1/2)/(2/3+1/2) = 4/7
    assert word_f1("House time boy", "house time water way") == pytest.approx(4 / 7)
    assert word_f1("a a", "a") == pytest.approx(2 / 3)  # one "a" overlaps: P 1/2, R 1
    assert word_f1("", "") == 1.0 and word_f1("", "x") == 0.0 and word_f1("y", "x") == 0.0


def test_scores_by_hand(tmp_path):
    refs = (Reference("q1", "house time water"), Reference("q2", "house time water way"), Reference("q3", "x"),
            Reference("q4", "a b"))
    result = GenerationResult("words", refs, (" house time water\n", "House time boy", "y", "a b"))
    # exact: q1 (surrounding whitespace stripped) and q4 -> 2/4; F1: (1 + 4/7 + 0 + 1) / 4 = 0.642857...
    assert (result.correct, result.exact_match, result.f1, result.score) == (2, 50.0, 64.29, 50.0)
    assert table(result) == "words\n             exact_match:  50.00  (2/4)\n                      f1:  64.29"
    saved = json.loads((write_generation_results(result, tmp_path / "out") / "results.json").read_text())
    assert (saved["score"], saved["exact_match"], saved["f1"], saved["total"]) == (50.0, 50.0, 64.29, 4)
    assert [p["exact_match"] for p in saved["predictions"]] == [True, False, False, True]
    assert saved["predictions"][1] == {"prompt": "q2", "predict": "House time boy", "label": "house time water way",
                                       "exact_match": False}


def test_generation_config_needs_a_dataset_and_names_the_task_after_it():
    config = EvalConfig(model_name_or_path="m", task_type="generation", dataset="data/heldout.jsonl")
    assert config.task == "heldout"
    with pytest.raises(ValidationError, match="needs dataset"):
        EvalConfig(model_name_or_path="m", task_type="generation")
    with pytest.raises(ValidationError, match="task: required"):
        EvalConfig(model_name_or_path="m")
