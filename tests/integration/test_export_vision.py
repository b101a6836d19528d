"""`kubetune export` of a vision-language LoRA adapter: the merged folder loads with transformers' Auto classes for
images and text and answers as the base model with the adapter does.

The adapter is made as training makes it (kubetune's own LoRA targets for the vision tower and language model,
the projector trained whole) with random non-zero weights, so merging it visibly changes the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from kubetune.artifacts import check_artifact
from kubetune.cli.main import main as kubetune_main
from kubetune.data.templates import get_template
from kubetune.model.adapters import vision_lora_targets
from kubetune.model.tiny import build_tiny_vlm

pytestmark = pytest.mark.slow
PROMPT = "<|vision_start|><|image_pad|><|vision_end|>What colour is this picture?"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("vl-base"), "qwen2_vl", seed=4)


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory) -> Path:
    return vision_adapter(base, tmp_path_factory.mktemp("vl-adapter"))


def vision_adapter(base: Path, out: Path, seed: int = 0) -> Path:
    """A LoRA adapter of the vision tower and language model with the projector saved whole, non-zero weights."""
    from peft import LoraConfig, get_peft_model

    model = AutoModelForImageTextToText.from_pretrained(base)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=vision_lora_targets(names, ["all"], set()),
                        modules_to_save=["merger"])
    peft_model = get_peft_model(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
            elif "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.05)
    peft_model.save_pretrained(out)
    AutoProcessor.from_pretrained(base).save_pretrained(out)  # training saves the processor with the adapter
    return out


def inputs(processor, colour: tuple[int, int, int], size: int):
    prompt = get_template("qwen2_vl").render_prompt([{"role": "user", "content": PROMPT}],
                                                    eos_token=processor.tokenizer.eos_token)
    return processor(text=[prompt], images=[Image.new("RGB", (size, size), colour)], return_tensors="pt")


def outputs(model, batch) -> tuple[torch.Tensor, list[int]]:
    with torch.no_grad():
        logits = model(**batch).logits[0, -1]
        ids = model.generate(**batch, max_new_tokens=8, do_sample=False)[0, batch["input_ids"].shape[1]:]
    return logits, ids.tolist()


def test_exported_vision_model_loads_with_auto_classes_and_equals_base_plus_adapter(base, adapter, tmp_path):
    from peft import PeftModel

    export_dir = tmp_path / "merged"
    cfg = {"model_name_or_path": str(base), "adapter_name_or_path": str(adapter), "template": "qwen2_vl",
           "finetuning_type": "lora", "export_dir": str(export_dir), "export_size": 1}
    (tmp_path / "export.yaml").write_text(yaml.safe_dump(cfg))
    assert kubetune_main(["export", str(tmp_path / "export.yaml")]) == 0
    assert check_artifact(export_dir, verify_files=True).artifact_type == "full-model"
    assert json.loads((export_dir / "config.json").read_text())["architectures"] == ["Qwen2VLForConditionalGeneration"]
    assert (export_dir / "processor_config.json").is_file() or (export_dir / "preprocessor_config.json").is_file()

    merged = AutoModelForImageTextToText.from_pretrained(export_dir).eval()
    assert type(merged).__name__ == "Qwen2VLForConditionalGeneration"
    assert not any("lora" in name for name, _ in merged.named_parameters())
    processor = AutoProcessor.from_pretrained(export_dir)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    plain = AutoModelForImageTextToText.from_pretrained(base).eval()
    with_adapter = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), adapter).eval()
    for colour, size in [((200, 30, 30), 56), ((30, 60, 200), 84)]:
        batch = inputs(processor, colour, size)
        expected_logits, expected_ids = outputs(with_adapter, batch)
        logits, ids = outputs(merged, batch)
        torch.testing.assert_close(logits, expected_logits, atol=1e-4, rtol=1e-4)
        assert ids == expected_ids
        assert not torch.allclose(outputs(plain, batch)[0], expected_logits, atol=1e-2)  # the adapter matters


def test_quantizing_a_vision_model_is_refused_before_merging(base, adapter, tmp_path, capsys):
    cfg = {"model_name_or_path": str(base), "adapter_name_or_path": str(adapter), "export_dir": str(tmp_path / "q"),
           "export_quantization_bit": 4, "export_quantization_method": "bnb"}
    (tmp_path / "export.yaml").write_text(yaml.safe_dump(cfg))
    assert kubetune_main(["export", str(tmp_path / "export.yaml")]) != 0
    assert "vision-language model" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
