"""`kubetune eval` on tiny local models: its choices equal a direct next-token logits computation, on a base model,
a base with a LoRA adapter and the merged export of that adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from kubetune.cli.main import main
from kubetune.export.merge import merge_lora
from tests.adapters import train_lora
from tests.support.benchmarks import ASTRONOMY, DEV, HISTORY, small_benchmark

pytestmark = pytest.mark.slow
SUBJECTS = {"astronomy": ("Astronomy", ASTRONOMY), "world_history": ("World History", HISTORY)}


def _prompt(name: str, question: str, options: list[str], shot: bool) -> str:
    """The one-shot prompt written out by hand (template ``empty``: the turns are concatenated as they are)."""
    def block(q: str, opts: list[str]) -> str:
        return q + "".join(f"\n{letter}. {o}" for letter, o in zip("ABCD", opts, strict=False)) + "\nAnswer:"

    head = f"The following are multiple choice questions (with answers) about {name}.\n\n"
    dev_q, dev_opts, dev_answer = DEV[0]
    return head + (block(dev_q, dev_opts) + dev_answer + block(question, options) if shot else block(question, options))


def _direct_choices(model, tokenizer, shot: bool = True) -> dict[str, dict[str, str]]:
    """Each question alone (no batch, no padding): argmax of the last position's logits over the letters' ids."""
    out: dict[str, dict[str, str]] = {}
    for key, (name, rows) in SUBJECTS.items():
        out[key] = {}
        for i, (question, options, _) in enumerate(rows):
            ids = tokenizer(_prompt(name, question, options, shot), add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                last = model(input_ids=torch.tensor([ids])).logits[0, -1]
            letters = "ABCD"[: len(options)]
            scores = [last[tokenizer.encode(letter, add_special_tokens=False)[-1]].item() for letter in letters]
            out[key][str(i)] = letters[scores.index(max(scores))]
    return out


def _accuracy(predictions: dict[str, dict[str, str]]) -> float:
    rows = [(p, answer) for key, (_, qs) in SUBJECTS.items() for p, (_, _, answer) in
            zip(predictions[key].values(), qs, strict=True)]
    return round(100 * sum(p == a for p, a in rows) / len(rows), 2)


def _eval(tmp_path: Path, model: Path, save: str, **keys) -> dict:
    config = {"model_name_or_path": str(model), "template": "empty", "task": "tiny_test",
              "task_dir": str(small_benchmark(tmp_path / "evaluation")), "n_shot": 1, "batch_size": 2,
              "save_dir": str(tmp_path / save), **keys}
    config = {k: v for k, v in config.items() if v is not None}
    path = tmp_path / f"{save}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["eval", str(path)]) == 0
    return json.loads((tmp_path / save / "results.json").read_text())


@pytest.fixture(scope="module")
def adapter(tiny_llama, tmp_path_factory) -> Path:
    texts = [_prompt("Astronomy", q, o, shot=True) + a for q, o, a in ASTRONOMY]
    return train_lora(tiny_llama, tmp_path_factory.mktemp("eval-adapter"), texts, steps=6, lm_head=True)


def test_choices_are_the_letter_with_the_highest_logit(tiny_llama, tmp_path, capsys):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    expected = _direct_choices(AutoModelForCausalLM.from_pretrained(tiny_llama), tokenizer)
    results = _eval(tmp_path, tiny_llama, "base")
    assert results["predictions"] == expected
    assert results["score"] == _accuracy(expected)
    assert (tmp_path / "base" / "results.log").read_text().startswith("tiny_test\n")
    printed = capsys.readouterr().out
    assert f"Average: {_accuracy(expected):6.2f}" in printed and "STEM" in printed and "Humanities" in printed


def test_a_model_with_flat_logits_always_answers_a(tiny_llama, tmp_path):
    """Zero final-norm weights make every logit 0: the tie goes to the first option, A (2 of 5 answers)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    flat = tmp_path / "flat-model"
    model.save_pretrained(flat)
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(flat)
    results = _eval(tmp_path, flat, "flat", n_shot=0)
    assert results["categories"] == {"STEM": round(100 / 3, 2), "Humanities": 50.0, "Average": 40.0}
    assert {p for s in results["predictions"].values() for p in s.values()} == {"A"}


def test_adapter_and_its_merged_export_score_alike(tiny_llama, adapter, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), adapter)
    expected = _direct_choices(peft_model, tokenizer)
    with_adapter = _eval(tmp_path, tiny_llama, "adapter", adapter_name_or_path=str(adapter))
    merged = merge_lora(str(tiny_llama), [str(adapter)], tmp_path / "merged-model", "float32")
    exported = _eval(tmp_path, merged, "merged")
    assert with_adapter["predictions"] == expected == exported["predictions"]
    assert with_adapter["score"] == exported["score"] == _accuracy(expected)


def test_errors_name_the_problem(tiny_llama, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_llama), "task": "missing_test",
                                      "task_dir": str(tmp_path)}))
    assert main(["eval", str(config)]) == 2
    assert "missing/mapping.json: not found" in capsys.readouterr().err
    config.write_text(f"model_name_or_path: {tiny_llama}\ntask: tiny_test\nn_shots: 5\n")
    assert main(["eval", str(config)]) == 2
    assert "c.yaml:3" in capsys.readouterr().err


def _greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """One prompt alone (no batch, no padding), greedy, template ``empty``: the prompt's own tokens."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    new = out[0, len(ids):].tolist()
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id)]
    return tokenizer.decode(new, skip_special_tokens=True)


def test_generation_scores_greedy_answers_against_references(tiny_llama, tmp_path, capsys):
    """References built from the model's own greedy answers: one equal, one with two extra words, one disjoint."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    prompts = ["reverse: water time house", "sort: world boy animal", "Translate\nchat"]
    answers = [_greedy(model, tokenizer, p, 6) for p in prompts]
    words = len(answers[1].split())
    assert words and all(a.strip() for a in answers)  # the fixture model says something
    refs = [answers[0], answers[1] + " zzqx qqzx", "zzqx"]
    rows = [{"instruction": "reverse: water time house", "input": "", "output": refs[0]},
            {"instruction": "sort: world boy animal", "output": refs[1]},
            {"instruction": "Translate", "input": "chat", "output": refs[2]}]
    data = tmp_path / "heldout.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = _eval(tmp_path, tiny_llama, "gen", task_type="generation", dataset=str(data), max_new_tokens=6,
                    batch_size=2, task=None)
    assert results["task"] == "heldout"
    assert [p["predict"] for p in results["predictions"]] == [a.strip() for a in answers]
    # exact: 1 of 3; F1: row 1 is 1, row 2 has P 1 and R words/(words+2), row 3 is 0 (disjoint words)
    f1_row2 = 2 * (words / (words + 2)) / (1 + words / (words + 2))
    assert (results["exact_match"], results["score"]) == (33.33, 33.33)
    assert results["f1"] == round(100 * (1 + f1_row2) / 3, 2)
    assert "exact_match:  33.33  (1/3)" in capsys.readouterr().out
