"""build_datasets: the LLaMA-Factory example becomes a tokenized train set; labels, packing and cache behave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.config import load_config
from kubetune.data.bundle import build_datasets
from kubetune.data.collators import FlatteningCollator, PaddingCollator
from kubetune.data.packing import chunk, knapsack, pack_bins
from kubetune.data.templates import get_template
from kubetune.data.tokenize import IGNORE_INDEX, SftSettings, encode_sft, split_budget

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llamafactory" / "sft_lora.yaml"


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def example_config(tmp_path, *overrides: str):
    return load_config(EXAMPLE, [f"tokenized_cache_dir={tmp_path / 'cache'}", *overrides])


def test_llamafactory_example_builds_a_tokenized_train_set(tmp_path, tok, monkeypatch):
    monkeypatch.chdir(ROOT)  # LLaMA-Factory resolves dataset_dir against the working directory
    cfg = example_config(tmp_path)
    bundle = build_datasets(cfg, tok)
    assert bundle.stats.rows == {"alpaca_demo": 8, "chat_demo": 6} and bundle.stats.train_rows == 14
    assert bundle.eval is None and isinstance(bundle.collator, PaddingCollator)
    row = bundle.train[0]
    assert set(row) == {"input_ids", "labels"} and len(row["input_ids"]) == len(row["labels"])
    # The prompt is masked; the answer (and its end-of-turn) is trained.
    trained = [t for t in row["labels"] if t != IGNORE_INDEX]
    assert tok.decode(trained) == "Paris is the capital of France.<|im_end|>\n"
    assert tok.decode(row["input_ids"]).startswith("<|im_start|>system\nYou are Qwen")
    batch = bundle.collator([bundle.train[i] for i in range(3)])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    # Multi-turn sharegpt row: both answers are trained.
    multi = next(r for r in bundle.train if tok.decode(r["input_ids"]).count("<|im_start|>assistant") == 2)
    assert tok.decode([t for t in multi["labels"] if t != IGNORE_INDEX]) == "4.<|im_end|>\n6.<|im_end|>\n"


def test_tokenized_result_is_cached(tmp_path, tok, monkeypatch):
    monkeypatch.chdir(ROOT)
    first = build_datasets(example_config(tmp_path, "val_size=2"), tok)
    second = build_datasets(example_config(tmp_path, "val_size=2"), tok)
    assert not first.stats.from_cache and second.stats.from_cache
    assert second.stats.cache_path == first.stats.cache_path and len(second.eval) == 2
    assert second.train["input_ids"] == first.train["input_ids"]
    other = build_datasets(example_config(tmp_path, "val_size=2", "cutoff_len=64"), tok)
    assert not other.stats.from_cache  # a setting in the key changed


def test_neat_packing_bundle(tmp_path, tok, monkeypatch):
    monkeypatch.chdir(ROOT)
    bundle = build_datasets(example_config(tmp_path, "neat_packing=true", "cutoff_len=128"), tok)
    assert isinstance(bundle.collator, FlatteningCollator) and bundle.stats.train_rows < 14
    row = bundle.train[0]
    assert len(row["input_ids"]) <= 128 and row["position_ids"].count(0) >= 2
    batch = bundle.collator([bundle.train[0], bundle.train[1]])
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch


def test_preference_bundle(tmp_path, tok):
    (tmp_path / "prefs.jsonl").write_text(json.dumps({"instruction": "Q?", "chosen": "Good.", "rejected": "Bad."}))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"p": {"file_name": "prefs.jsonl", "ranking": True}}))
    cfg = load_config(EXAMPLE, [f"dataset_dir={tmp_path}", "dataset=p", "stage=dpo",
                                f"tokenized_cache_dir={tmp_path / 'cache'}"])
    bundle = build_datasets(cfg, tok)
    assert bundle.collator is None
    assert bundle.train[0]["prompt"] == [{"role": "user", "content": "Q?"}]
    assert bundle.train[0]["chosen"] == [{"role": "assistant", "content": "Good."}]


def test_pretraining_chunks(tmp_path, tok):
    (tmp_path / "docs.txt").write_text("\n".join(f"document number {i} says hello" for i in range(20)))
    cfg = load_config(EXAMPLE, [f"dataset={tmp_path / 'docs.txt'}", "stage=pt", "cutoff_len=16",
                                f"tokenized_cache_dir={tmp_path / 'cache'}"])
    bundle = build_datasets(cfg, tok)
    assert cfg.data.packing and all(len(r) == 16 for r in bundle.train["input_ids"])
    assert bundle.train[0]["labels"] == bundle.train[0]["input_ids"]


def test_label_masking_rules():
    pairs = [([1, 2], [3, 4]), ([5, 6], [7, 8])]
    plain = encode_sft(pairs, SftSettings(cutoff_len=100))
    assert plain == {"input_ids": [1, 2, 3, 4, 5, 6, 7, 8], "labels": [-100, -100, 3, 4, -100, -100, 7, 8]}
    assert encode_sft(pairs, SftSettings(100, train_on_prompt=True))["labels"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert encode_sft(pairs, SftSettings(100, mask_history=True))["labels"] == [-100] * 6 + [7, 8]
    eff = encode_sft(pairs, SftSettings(100, efficient_eos=True, eos_token_id=0))
    assert eff == {"input_ids": [1, 2, 3, 4, 5, 6, 7, 8, 0], "labels": [-100, -100, 3, 4, 5, -100, 7, 8, 0]}
    short = encode_sft(pairs, SftSettings(cutoff_len=5, mask_history=True))
    assert short["input_ids"] == [1, 5, 6, 7, 8]  # the last turn is kept whole, older turns get what is left
    assert split_budget(10, 3, 8) == (5, 3) and split_budget(3, 10, 8) == (3, 5) and split_budget(6, 6, 8) == (4, 4)


def test_packing_helpers():
    assert chunk([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4, 5], "labels": [4, 5]}], 2) == [
        {"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [3, 4], "labels": [3, 4]}]
    bins = knapsack([5, 3, 4, 2, 6], capacity=8)
    assert sorted(i for b in bins for i in b) == [0, 1, 2, 3, 4]
    assert all(sum([5, 3, 4, 2, 6][i] for i in b) <= 8 for b in bins) and len(bins) == 3
    packed = pack_bins([{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [3], "labels": [3]}], 4)
    assert packed == [{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "position_ids": [0, 1, 0]}]
    flat = FlatteningCollator()([*packed, {"input_ids": [9, 9], "labels": [9, 9]}])
    assert flat["position_ids"].tolist() == [[0, 1, 0, 0, 1]]
    assert flat["labels"].tolist() == [[-100, 2, -100, -100, 9]]


def test_template_masks_for_qwen_answer(tok):
    t = get_template("qwen")
    row = encode_sft(t.encode_multiturn(tok, [{"role": "user", "content": "Hi."},
                                              {"role": "assistant", "content": "Hello."}]), SftSettings(64))
    assert tok.decode([x for x in row["labels"] if x != IGNORE_INDEX]) == "Hello.<|im_end|>\n"
