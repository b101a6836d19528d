"""What people meet on the command line: the loss they are told, overrides, flags after the file, warnings, docs."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from kubetune.cli.main import main as kubetune_main
from kubetune.config import load_config, parse_overrides
from kubetune.config.files import override_value
from kubetune.quiet import KNOWN_DEPRECATIONS, silence_known_deprecations
from kubetune.train.context import TrainResult, last_logged_loss, loss_summary

ROOT = Path(__file__).resolve().parents[2]


def test_final_loss_is_the_last_logged_loss_and_the_mean_is_named_the_mean():
    history = [{"loss": 1.2, "step": 1}, {"loss": 0.0602, "step": 2}, {"train_loss": 0.7613, "step": 2}]
    assert last_logged_loss(history) == 0.0602
    result = TrainResult(Path("out"), "lora-adapter", 2, train_loss=0.7613, last_loss=last_logged_loss(history))
    assert loss_summary(result) == "final loss 0.0602 (mean 0.7613)"
    assert last_logged_loss([{"eval_loss": 0.5}]) is None
    assert loss_summary(TrainResult(Path("out"), "full-model", 0, train_loss=None)) == ""


@pytest.mark.parametrize(("text", "value"), [
    ("no", "no"), ("off", "off"), ("yes", "yes"), ("On", "On"), ("n", "n"),
    ("true", True), ("False", False), ("16", 16), ("5.0e-6", 5.0e-6), ("qwen", "qwen"), ("", None),
])
def test_override_values_keep_yaml_1_1_booleans_as_strings(text, value):
    assert override_value(text) == value


def test_one_override_parser():
    import kubetune.config.files
    import kubetune.config.loader

    assert kubetune.config.loader.parse_overrides is kubetune.config.files.parse_overrides
    assert parse_overrides(["eval_strategy=no", "bf16=yes"]) == {"eval_strategy": "no", "bf16": "yes"}


def _flat_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text("model_name_or_path: m\nstage: sft\nfinetuning_type: lora\ndataset: d\noutput_dir: o\n" + extra)
    return path


def test_eval_strategy_no_override_is_the_string_and_bool_fields_still_read_yes(tmp_path):
    cfg = load_config(_flat_config(tmp_path, "eval_strategy: steps\neval_steps: 5\n"),
                      ["eval_strategy=no", "gradient_checkpointing=no", "packing=yes"])
    assert cfg.training.eval_strategy == "no"
    assert cfg.training.gradient_checkpointing is False and cfg.data.packing is True


def test_flags_between_the_file_and_the_overrides_are_accepted(tmp_path, capsys):
    # The config has a typo: reaching the config error proves argparse took `--no-progress lora_rank=8`.
    config = _flat_config(tmp_path, "lora_rnak: 8\n")
    assert kubetune_main(["train", str(config), "--no-progress", "lora_rank=8"]) == 2
    assert f"{config}:6: lora_rnak: unknown key lora_rnak" in capsys.readouterr().err


def test_known_deprecations_are_silenced_at_their_source_only():
    known = KNOWN_DEPRECATIONS[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_deprecations()
        text = known.message.replace("\\", "") + " and will be removed"
        warnings.warn_explicit(text, known.category, "modeling_utils.py", 1, module="transformers.modeling_utils")
        warnings.warn_explicit(text, known.category, "ours.py", 1, module="kubetune.train.workflow")
        warnings.warn_explicit("something else is deprecated", FutureWarning, "m.py", 1,
                               module="transformers.modeling_utils")
    assert [str(w.message) for w in caught] == [text, "something else is deprecated"]


def test_doc_comments_point_at_files_that_exist():
    missing = []
    for source in [*ROOT.glob("runtime/kubetune/**/*.py"), *ROOT.glob("operator/kubetune_operator/**/*.py")]:
        for match in re.finditer(r"\b((?:docs|reference)/[\w./-]+\.md)", source.read_text()):
            if not (ROOT / match.group(1)).is_file():
                missing.append(f"{source.relative_to(ROOT)}: {match.group(1)}")
    assert missing == []
