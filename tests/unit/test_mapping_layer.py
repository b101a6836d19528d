"""The mapping layer: CR <-> runtime mappings side by side in kubetune.config, the defaults that differ from
LLaMA-Factory as one table (docs and `kubetune convert` render it), template names without the data layer."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from kubetune.api.finetunejob import FineTuneJob
from kubetune.config.mapping.defaults import WHY, default_differences, differences_markdown
from kubetune.config.templates import FAMILIES, template_names

ROOT = Path(__file__).resolve().parents[2]


def test_mappings_live_side_by_side_in_the_config_layer():
    for kind, function in (("train", "runtime_config_from_finetunejob"), ("export", "export_config_from_modelexport"),
                           ("serve", "serve_config_from_inferenceservice")):
        assert callable(getattr(importlib.import_module(f"kubetune.config.mapping.{kind}"), function))
    for gone in ("kubetune.export.config", "kubetune.serve.config", "kubetune.serve.limits", "kubetune.cli.configfile"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(gone)


def test_the_defaults_table_names_the_known_differences():
    found = {d.key: (d.finetunejob, d.llamafactory) for d in default_differences()}
    assert found["lr_scheduler_type"] == ("cosine", "linear")
    assert found["per_device_train_batch_size"] == (1, 8)
    assert found["gradient_accumulation_steps"] == (8, 1)
    assert found["logging_steps"] == (10, 500)
    assert found["optim"][0] == "adamw_torch"
    assert "max_steps" not in found  # unset and -1 both mean "train for the epochs"
    assert {d.field for d in default_differences()} >= {"spec.training.lrScheduler", "spec.training.loggingSteps"}
    assert len(WHY) == len(default_differences())  # every explanation is used: a default that converged is removed


def test_the_docs_table_is_rendered_from_the_data():
    text = (ROOT / "docs" / "llamafactory.md").read_text()
    table = text.split("<!-- defaults:begin -->\n")[1].split("<!-- defaults:end -->")[0]
    assert table.strip() == differences_markdown()


def test_convert_prints_the_differences_above_a_valid_finetunejob(tmp_path, capsys, monkeypatch):
    from kubetune.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lf.yaml").write_text(yaml.safe_dump({
        "model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "stage": "sft", "finetuning_type": "lora",
        "dataset": "identity", "template": "qwen", "output_dir": "saves/sft"}))
    assert main(["convert", "lf.yaml"]) == 0
    out = capsys.readouterr().out
    assert "#   spec.training.lrScheduler: cosine (LLaMA-Factory lr_scheduler_type: linear)" in out
    assert "#   spec.training.loggingSteps: 10 (LLaMA-Factory logging_steps: 500)" in out
    job = FineTuneJob.model_validate(yaml.safe_load(out))
    # the converted job keeps the YAML's (LLaMA-Factory's) values, not the FineTuneJob defaults
    assert job.spec.training.lr_scheduler == "linear" and job.spec.training.logging_steps == 500


def test_template_names_are_checked_without_the_data_layer():
    from kubetune.data.templates.registry import TABLE, get_template

    assert sorted(t.name for t in TABLE) == sorted(FAMILIES)
    assert all(get_template(name) is not None for name in template_names())

