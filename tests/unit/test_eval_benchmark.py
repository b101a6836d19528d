"""`kubetune eval` pieces that need no model: config keys, the benchmark layout, prompts, and the score table."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from kubetune.eval.benchmark import BenchmarkError, Question, Subject, load_benchmark
from kubetune.eval.config import EvalConfig
from kubetune.eval.prompts import TEMPLATES, build_messages, format_question, pick_shots
from kubetune.eval.results import SubjectResult, summarize, table, to_json
from tests.support.benchmarks import small_benchmark


def test_llamafactory_eval_yaml_keys_are_accepted():
    config = EvalConfig.model_validate({
        "model_name_or_path": "m", "adapter_name_or_path": "a1,a2", "template": "qwen", "finetuning_type": "lora",
        "task": "mmlu_test", "task_dir": "evaluation", "n_shot": 5, "lang": "en", "save_dir": "out",
        "batch_size": 4, "seed": 42, "download_mode": "reuse_dataset_if_exists"})
    assert (config.benchmark, config.split, config.adapter_name_or_path) == ("mmlu", "test", ["a1", "a2"])
    assert EvalConfig(model_name_or_path="m", task="c_eval_validation").benchmark == "c_eval"


@pytest.mark.parametrize("bad", [{"task": "mmlu"}, {"task": "mmlu_test", "lang": "fr"},
                                 {"task": "mmlu_test", "n_shot": -1}, {"task": "mmlu_test", "nshot": 5}])
def test_bad_eval_configs_are_refused(bad):
    with pytest.raises(ValidationError):
        EvalConfig.model_validate({"model_name_or_path": "m", **bad})


def test_benchmark_layout_is_read_in_mapping_order(tmp_path):
    small_benchmark(tmp_path)
    subjects = load_benchmark(tmp_path, "tiny", "test")
    assert [(s.key, s.name, s.category, len(s.questions), len(s.examples)) for s in subjects] == [
        ("astronomy", "Astronomy", "STEM", 3, 1), ("world_history", "World History", "Humanities", 2, 1)]
    assert subjects[1].questions[1] == Question("Which came first?", ("Bronze age", "Iron age"), "A")


def test_csv_files_with_and_without_header(tmp_path):
    folder = tmp_path / "mmlu"
    (folder / "test").mkdir(parents=True)
    (folder / "mapping.json").write_text(json.dumps({"a": {"name": "A", "category": "Other"},
                                                     "b": {"name": "B", "category": "Other"}}))
    (folder / "test" / "a.csv").write_text('question,A,B,C,D,answer\n"Pick, one",x,y,z,w,C\n')
    (folder / "test" / "b.csv").write_text("Two?,1,2,3,4,B\n")  # MMLU's own headerless rows
    a, b = load_benchmark(tmp_path, "mmlu", "test")
    assert a.questions == (Question("Pick, one", ("x", "y", "z", "w"), "C"),)
    assert b.questions == (Question("Two?", ("1", "2", "3", "4"), "B"),)


def test_layout_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(BenchmarkError, match=r"mmlu/mapping.json: not found"):
        load_benchmark(tmp_path, "mmlu", "test")
    small_benchmark(tmp_path)
    (tmp_path / "tiny" / "test" / "astronomy.jsonl").write_text(
        '{"question": "q", "A": "x", "B": "y", "answer": "A"}\n{"question": "q", "A": "x", "B": "y", "answer": "E"}\n')
    with pytest.raises(BenchmarkError, match=r"astronomy.jsonl:2: answer 'E' is not one of the option letters AB"):
        load_benchmark(tmp_path, "tiny", "test")
    with pytest.raises(BenchmarkError, match=r"no subject of mapping.json has rows in .*/tiny/validation/"):
        load_benchmark(tmp_path, "tiny", "validation")


def test_prompt_text_is_llamafactorys():
    q = Question("Which planet is largest?", ("Mars", "Jupiter"), "B")
    shot = Question("What is 1 + 1?", ("Two", "Three"), "A")
    messages = build_messages(q, [shot], "astronomy", TEMPLATES["en"])
    assert messages == [
        {"role": "user", "content": "The following are multiple choice questions (with answers) about astronomy."
                                    "\n\nWhat is 1 + 1?\nA. Two\nB. Three\nAnswer:"},
        {"role": "assistant", "content": "A"},
        {"role": "user", "content": "Which planet is largest?\nA. Mars\nB. Jupiter\nAnswer:"},
    ]
    assert format_question(q, TEMPLATES["zh"]) == "Which planet is largest?\nA. Mars\nB. Jupiter\n答案："
    assert build_messages(q, [], "天文学", TEMPLATES["zh"])[0]["content"].startswith(
        "以下是中国关于天文学考试的单项选择题，请选出其中的正确答案。\n\nWhich planet")


def test_shots_are_seeded_per_subject():
    dev = tuple(Question(f"q{i}", ("x", "y"), "A") for i in range(6))
    subject = Subject("s", "S", "Other", (Question("t", ("x", "y"), "B"),) * 3, dev)
    first = pick_shots(subject, 2, seed=42)
    assert first == pick_shots(subject, 2, seed=42) and all(len(s) == 2 for s in first)
    assert pick_shots(subject, 6, seed=42) == [list(dev)] * 3  # all of dev, in file order


def test_category_and_average_count_questions():
    results = [SubjectResult("a", "A", "STEM", ("A", "B", "C"), ("A", "B", "D")),   # 2/3
               SubjectResult("b", "B", "STEM", ("A",), ("A",)),                    # 1/1
               SubjectResult("c", "C", "Humanities", ("B", "B"), ("A", "B"))]      # 1/2
    result = summarize("tiny_test", results)
    assert result.categories == {"STEM": 75.0, "Humanities": 50.0, "Average": 66.67}
    assert result.score == 66.67
    data = to_json(result)
    assert data["subjects"]["a"] == {"name": "A", "category": "STEM", "accuracy": 66.67, "correct": 2, "total": 3}
    assert data["predictions"]["c"] == {"0": "B", "1": "B"}
    assert "Average:  66.67" in table(result) and "A:  66.67  (2/3)" in table(result)
