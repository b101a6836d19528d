"""TrainingArguments keyword arguments rendered from the runtime config."""

from __future__ import annotations

import pytest

from kubetune.config import config_from_flat
from kubetune.train.arguments import argument_kwargs, check_strategy, precision_of, reporters, strategy_kwargs
from kubetune.train.distributed import LaunchError


def cfg_of(**keys):
    return config_from_flat({"model_name_or_path": "m", "dataset": "d", "output_dir": "/out", **keys})


def kwargs_of(precision="fp32", installed=frozenset(), **keys):
    return argument_kwargs(cfg_of(**keys), precision=precision, layer_classes=["LlamaDecoderLayer"],
                           installed=set(installed), output_dir="/out")


def test_defaults_for_a_lora_run():
    kwargs, dropped = kwargs_of(learning_rate=1e-4, max_steps=10)
    assert dropped == []
    assert kwargs["output_dir"] == "/out" and kwargs["learning_rate"] == 1e-4 and kwargs["max_steps"] == 10
    assert kwargs["bf16"] is False and kwargs["fp16"] is False
    assert kwargs["remove_unused_columns"] is False  # the collator needs the tokenized columns
    assert kwargs["ddp_find_unused_parameters"] is False  # frozen base: nothing to search for
    assert kwargs["resume_from_checkpoint"] is None
    assert "gradient_checkpointing" not in kwargs  # applied by the model loader
    assert kwargs["report_to"] == "none"
    assert "fsdp" not in kwargs and "deepspeed" not in kwargs


def test_full_finetuning_keeps_ddp_default():
    kwargs, _ = kwargs_of(finetuning_type="full")
    assert "ddp_find_unused_parameters" not in kwargs


@pytest.mark.parametrize(("precision", "bf16", "fp16"), [("bf16", True, False), ("fp16", False, True)])
def test_precision_flags(precision, bf16, fp16):
    kwargs, _ = kwargs_of(precision=precision)
    assert (kwargs["bf16"], kwargs["fp16"]) == (bf16, fp16)


def test_precision_of_config():
    assert precision_of(cfg_of(bf16=True).training) == "bf16"
    assert precision_of(cfg_of(precision="fp16").training) == "fp16"
    assert precision_of(cfg_of().training) in ("fp32", "bf16")  # auto: bf16 only on GPUs that support it


def test_reporters_drop_missing_packages():
    assert reporters("none", set()) == ([], [])
    assert reporters("tensorboard,wandb", {"tensorboard"}) == (["tensorboard"], ["wandb"])
    assert reporters(["tensorboard"], set()) == ([], ["tensorboard"])
    kwargs, dropped = kwargs_of(report_to="tensorboard", installed={"tensorboard"})
    assert kwargs["report_to"] == ["tensorboard"] and dropped == []


def test_fsdp_strategy_renders_config():
    kwargs, _ = kwargs_of(fsdp="full_shard auto_wrap offload")
    assert kwargs["fsdp"] is True
    assert kwargs["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert kwargs["fsdp_config"]["cpu_offload"] is True
    assert kwargs["fsdp_config"]["activation_checkpointing"] is True  # gradient_checkpointing defaults on
    own = strategy_kwargs(cfg_of(fsdp="full_shard", fsdp_config={"version": 2}), ["X"])
    assert own == {"fsdp": "full_shard", "fsdp_config": {"version": 2}}  # a user's own fsdp_config is kept


@pytest.mark.parametrize(("preset", "stage", "offload"), [("ds_z2", 2, False), ("ds_z3_offload", 3, True),
                                                          ("ds_z0", 0, False)])
def test_deepspeed_presets(preset, stage, offload):
    ds = strategy_kwargs(cfg_of(deepspeed=preset), [])["deepspeed"]
    assert ds["zero_optimization"]["stage"] == stage
    assert ("offload_optimizer" in ds["zero_optimization"]) == offload


def test_deepspeed_file(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text("{}")
    assert strategy_kwargs(cfg_of(deepspeed=str(path)), []) == {"deepspeed": str(path)}
    with pytest.raises(LaunchError, match="does not exist"):
        strategy_kwargs(cfg_of(deepspeed=str(tmp_path / "missing.json")), [])
    assert strategy_kwargs(cfg_of(strategy="deepspeed"), [])["deepspeed"]["zero_optimization"]["stage"] == 2


@pytest.mark.parametrize(
    ("strategy", "accelerator", "deepspeed", "message"),
    [("fsdp", False, False, "fsdp needs GPUs"), ("deepspeed", False, True, "deepspeed needs GPUs"),
     ("deepspeed", True, False, "deepspeed is not installed"), ("ddp", False, False, None),
     (None, False, False, None), ("fsdp", True, False, None), ("deepspeed", True, True, None)],
)
def test_strategy_needs_what_it_needs(strategy, accelerator, deepspeed, message):
    if message is None:
        check_strategy(strategy, accelerator, deepspeed)
    else:
        with pytest.raises(LaunchError, match=message):
            check_strategy(strategy, accelerator, deepspeed)


def test_kwargs_build_training_arguments():
    from transformers import TrainingArguments

    kwargs, _ = kwargs_of(max_steps=3, logging_steps=1)
    args = TrainingArguments(**kwargs)
    assert args.max_steps == 3 and args.remove_unused_columns is False
