"""`kubetune export` on tiny models: merged weights give the adapter's logits, the manifest comes last."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM

from kubetune.artifacts import check_artifact, read_manifest
from kubetune.cli.main import main
from tests.adapters import train_lora
from tests.builders import make_modelexport

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["The quick brown fox jumps over the lazy dog.", "A tiny model learns a tiny thing."]


@pytest.fixture(scope="module")
def adapter(tiny_llama, tmp_path_factory) -> Path:
    return train_lora(tiny_llama, tmp_path_factory.mktemp("adapter"), TEXTS, steps=4)


@pytest.fixture(scope="module")
def adapter2(tiny_llama, tmp_path_factory) -> Path:
    return train_lora(tiny_llama, tmp_path_factory.mktemp("adapter2"), TEXTS[::-1], steps=4, seed=1)


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.tensor([[83, 356, 122, 534, 264, 14, 200, 300, 400]])


def test_merged_model_gives_base_plus_adapter_logits(tiny_llama, adapter, tmp_path, capsys):
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), adapter)
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert any(p.abs().max() > 0 for p in lora_b), "training left B at zero: the test would prove nothing"
    out = tmp_path / "merged"
    cfg = _write(tmp_path / "export.yaml", {
        "model_name_or_path": str(tiny_llama), "adapter_name_or_path": str(adapter), "template": None,
        "finetuning_type": "lora", "export_dir": str(out), "infer_dtype": "float32", "max_shard_size": "300KB",
    })
    assert main(["export", str(cfg)]) == 0

    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    expected = _logits(peft_model, IDS)
    got = _logits(merged, IDS)
    diff = (got - expected).abs().max().item()
    print(f"merge max abs diff: {diff:.3e}")
    assert torch.allclose(got, expected, atol=1e-5), diff
    base_diff = (_logits(AutoModelForCausalLM.from_pretrained(tiny_llama), IDS) - expected).abs().max().item()
    assert base_diff > 1e-3, "the adapter should change the logits"

    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").is_file()
    assert (out / "generation_config.json").is_file() and (out / "tokenizer.json").is_file()
    manifest = check_artifact(out, expect_type="full-model", verify_files=True)
    assert manifest.base_model.uri == str(tiny_llama) and manifest.method == "lora"
    assert set(shards) <= set(manifest.files)
    assert not list(tmp_path.glob(".merged.partial"))


def test_two_adapters_merge_to_their_sum(tiny_llama, adapter, adapter2, tmp_path):
    out = tmp_path / "merged2"
    cfg = _write(tmp_path / "export.yaml", {
        "model_name_or_path": str(tiny_llama), "adapter_name_or_path": f"{adapter},{adapter2}",
        "export_dir": str(out), "infer_dtype": "float32", "template": "qwen",
    })
    assert main(["export", str(cfg)]) == 0
    generation = json.loads((out / "generation_config.json").read_text())
    assert 13 in generation["eos_token_id"]  # the qwen template's <|im_end|> now ends generation too
    both = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), adapter, adapter_name="a")
    both.load_adapter(str(adapter2), adapter_name="b")
    both.base_model.set_adapter(["a", "b"])  # both deltas active at once: W + ΔW_a + ΔW_b
    expected = _logits(both, IDS)
    got = _logits(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32), IDS)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_refuses_to_merge_into_a_quantized_base(tiny_llama, adapter, tmp_path, capsys):
    quantized = tmp_path / "base-gptq"
    shutil.copytree(tiny_llama, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (quantized / "config.json").write_text(json.dumps(config))
    cfg = _write(tmp_path / "export.yaml", {"model_name_or_path": str(quantized), "adapter_name_or_path": str(adapter),
                                            "export_dir": str(tmp_path / "out")})
    assert main(["export", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "gptq checkpoint" in err
    assert "export from the bf16/fp16 base: set model_name_or_path to the unquantized model" in err.lower()
    assert not (tmp_path / "out").exists()


def test_adapter_for_another_base_is_a_clear_error(tiny_model_factory, adapter, tmp_path, capsys):
    other = tiny_model_factory("llama", hidden_size=32, intermediate_size=64)
    cfg = _write(tmp_path / "export.yaml", {"model_name_or_path": str(other), "adapter_name_or_path": str(adapter),
                                            "export_dir": str(tmp_path / "out")})
    assert main(["export", str(cfg)]) == 1
    assert "adapter for another base model" in capsys.readouterr().err


def test_quantized_export_says_what_is_missing(tiny_llama, tmp_path, capsys):
    calib = tmp_path / "calib.txt"
    calib.write_text("some calibration text\nmore text\n")
    cfg = _write(tmp_path / "export.yaml", {
        "model_name_or_path": str(tiny_llama), "export_dir": str(tmp_path / "out"),
        "export_quantization_bit": 4, "export_quantization_dataset": str(calib),
    })
    assert main(["export", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "gptq export needs" in err and "gptqmodel" in err
    if not torch.cuda.is_available():
        assert "a CUDA GPU" in err
    assert not (tmp_path / "out").exists(), "the check runs before any work"


def test_modelexport_resource_with_uri_sources(tiny_llama, adapter, tmp_path):
    body = make_modelexport(
        name="support-merged",
        source={"fineTuneJobRef": None, "model": {"uri": f"file://{tiny_llama}"}, "adapter": {"uri": f"file://{adapter}"}},
        dtype="float32",
        output={"uri": f"file://{tmp_path}/models/"},
    )
    body["metadata"]["uid"] = "1a2b3c4d-0000-0000-0000-000000000000"
    cr = _write(tmp_path / "mexp.yaml", body)
    assert main(["export", str(cr)]) == 0
    out = tmp_path / "models" / "support-merged-1a2b3c4d"
    manifest = read_manifest(out)
    assert manifest.artifact_type == "full-model"
    assert manifest.created_by.kind == "ModelExport" and manifest.created_by.name == "support-merged"
    assert manifest.base_model.uri == f"file://{tiny_llama}"


def test_existing_output_is_not_overwritten(tiny_llama, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    cfg = _write(tmp_path / "export.yaml", {"model_name_or_path": str(tiny_llama), "export_dir": str(out)})
    assert main(["export", str(cfg)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(cfg), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and read_manifest(out).artifact_type == "full-model"


def test_adapter_from_kubetune_train_merges_exactly(tiny_llama, tmp_path):
    """The acceptance form: `kubetune train` (LoRA, a few steps) then `kubetune export`, logits compared in fp32."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"instruction": f"What is {i} plus {i}?", "input": "", "output": f"It is {2 * i}."} for i in range(16)]
    (data / "toy.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"toy": {"file_name": "toy.json"}}))
    run_dir = tmp_path / "run"
    train_cfg = _write(tmp_path / "train.yaml", {
        "model_name_or_path": str(tiny_llama), "stage": "sft", "finetuning_type": "lora", "lora_rank": 4,
        "lora_target": "all", "dataset": "toy", "dataset_dir": str(data), "template": "qwen", "cutoff_len": 48,
        "output_dir": str(run_dir), "per_device_train_batch_size": 4, "learning_rate": 1e-2, "max_steps": 4,
        "logging_steps": 1, "save_steps": 100, "report_to": "none", "gradient_checkpointing": False,
    })
    assert main(["train", str(train_cfg), "--no-progress"]) == 0
    out = tmp_path / "merged"
    cfg = _write(tmp_path / "export.yaml", {"model_name_or_path": str(tiny_llama), "adapter_name_or_path": str(run_dir),
                                            "template": "qwen", "export_dir": str(out), "infer_dtype": "float32"})
    assert main(["export", str(cfg)]) == 0
    expected = _logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), run_dir), IDS)
    got = _logits(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32), IDS)
    print(f"kubetune train -> export max abs diff: {(got - expected).abs().max().item():.3e}")
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got - _logits(AutoModelForCausalLM.from_pretrained(tiny_llama), IDS)).abs().max() > 1e-4
    assert read_manifest(out).stage == "sft"


KILL_BEFORE_MANIFEST = """
import os, signal, sys
import kubetune.export.pipeline as pipeline
# Die where a node loss or an OOM kill hurts most: the folder is renamed into place, the manifest not yet written.
pipeline.write_manifest = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
from kubetune.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_export_killed_before_its_manifest_is_replaced_by_the_retry(tiny_llama, tmp_path):
    out = tmp_path / "out"
    cfg = _write(tmp_path / "export.yaml", {"model_name_or_path": str(tiny_llama), "export_dir": str(out),
                                            "infer_dtype": "float32"})
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_MANIFEST, "export", str(cfg)],
                            capture_output=True, text=True, cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (out / "model.safetensors").is_file() and not (out / "kubetune-artifact.json").exists()

    assert main(["export", str(cfg)]) == 0  # the same command, as a Job's retry runs it: no --overwrite
    manifest = check_artifact(out, expect_type="full-model", verify_files=True)
    assert not [name for name in manifest.files if name.startswith(".")]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert not (tmp_path / ".out.partial").exists()
