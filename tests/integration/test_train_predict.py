"""`do_predict` + `predict_with_generate` after sft: predictions and their BLEU/ROUGE land in the artifact."""

from __future__ import annotations

import json

import pytest

from kubetune.artifacts import check_artifact
from kubetune.cli.main import main as kubetune_main
from kubetune.eval.metrics import similarity
from tests.integration.test_train_cli import write_config, write_data

pytestmark = pytest.mark.slow


def test_predictions_and_scores_are_written_before_the_manifest(tiny_llama, tmp_path, capsys):
    data = write_data(tmp_path / "data", rows=24)
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data, max_steps=2, val_size=4, do_predict=True,
                          predict_with_generate=True, do_sample=False, max_new_tokens=6)
    assert kubetune_main(["train", str(config), "--no-progress"]) == 0
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "generated_predictions.jsonl").read_text().splitlines()]
    alpaca = {f"It is {i % 6 + i % 4}." for i in range(24)}
    assert len(rows) == 4 and all(set(r) == {"prompt", "predict", "label"} for r in rows)
    assert all(r["label"] in alpaca and r["prompt"].endswith("<|im_start|>assistant\n") for r in rows)
    expected = similarity([r["predict"] for r in rows], [r["label"] for r in rows])
    results = json.loads((out / "predict_results.json").read_text())
    assert results == {**{f"predict_{k}": v for k, v in expected.items()}, "predict_samples": 4}
    manifest = check_artifact(out, expect_type="lora-adapter", verify_files=True)
    assert {"generated_predictions.jsonl", "predict_results.json"} <= set(manifest.files)
    assert manifest.metrics["predict_rouge-l"] == pytest.approx(expected["rouge-l"])


def test_predict_with_generate_needs_sft_and_evaluation_examples(tiny_llama, tmp_path, capsys):
    data = write_data(tmp_path / "data", rows=8)
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data, do_predict=True, predict_with_generate=True)
    assert kubetune_main(["train", str(config)]) == 2
    assert "needs evaluation examples: set val_size or eval_dataset" in capsys.readouterr().err
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data, stage="pt", dataset="toy_text",
                          predict_with_generate=True)
    assert kubetune_main(["train", str(config)]) == 2
    assert "predict_with_generate only applies to stage sft" in capsys.readouterr().err
