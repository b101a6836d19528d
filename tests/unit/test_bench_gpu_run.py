"""bench/gpu_run.sh renders, on CPU, the configs it would train on a GPU; each is a valid kubetune config whose
training arguments are what the benchmark claims (bf16, fused AdamW, checkpointing only in lora_gc, the strategy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from kubetune.config import load_config
from kubetune.train.arguments import argument_kwargs

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_renders_every_variant(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path), "PYTHON": sys.executable, "STEPS": "12"}
    proc = subprocess.run(["bash", "bench/gpu_run.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "would run: timeout 420 python3 bench/gpu_training.py" in proc.stdout
    rendered = {p.stem: p for p in (tmp_path / "train-bench").glob("*.yaml")}
    assert set(rendered) == {"lora", "qlora", "full", "lora_liger", "full_liger", "lora_gc", "lora_padded",
                             "full_ds_z2", "full_fsdp"}
    seen = {}
    for name, path in rendered.items():
        raw = yaml.safe_load(path.read_text())
        assert raw["max_steps"] == 12 and raw["bf16"] is True
        cfg = load_config(str(path))  # every key is one kubetune knows, with a valid value
        kwargs, _ = argument_kwargs(cfg, precision="bf16", layer_classes=["LlamaDecoderLayer"], installed=set(),
                                    output_dir=raw["output_dir"], liger=(True, True))  # as on the GPU machine
        assert kwargs["optim"] == "adamw_torch_fused" and kwargs["bf16"] is True
        assert cfg.training.gradient_checkpointing is (name == "lora_gc"), name
        assert cfg.data.neat_packing is (name != "lora_padded"), name
        seen[name] = (cfg, kwargs)
    assert seen["qlora"][0].method.quantization_bit == 4
    assert seen["lora_liger"][0].model.enable_liger_kernel and not seen["lora"][0].model.enable_liger_kernel
    assert seen["lora_liger"][1].get("use_liger_kernel") is True and not seen["lora"][1].get("use_liger_kernel")
    assert seen["full_ds_z2"][1]["deepspeed"]["zero_optimization"]["stage"] == 2
    assert seen["full_fsdp"][1]["fsdp"] is True
    assert seen["full_fsdp"][1]["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert "fsdp" not in seen["full"][1] and "deepspeed" not in seen["full"][1]
