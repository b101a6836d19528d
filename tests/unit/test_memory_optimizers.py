"""GaLore, APOLLO and BAdam: full fine-tuning of a tiny Llama with each, the loss falls; the config rules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from kubetune.config import ConfigError, config_from_flat
from kubetune.model.loader import load_tokenizer
from kubetune.model.tiny import build_tiny_model
from kubetune.train.arguments import training_arguments
from kubetune.train.optimizers import ALL_LINEAR_BUT_HEADS, low_rank_arguments
from kubetune.train.trainer import KubetuneTrainer
from kubetune.train.workflow import load_trainable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("opt") / "model", seed=0)


def make_cfg(model_dir, tmp_path, **keys):
    flat = {"model_name_or_path": str(model_dir), "dataset": "unused", "output_dir": str(tmp_path / "out"),
            "finetuning_type": "full", "gradient_checkpointing": False, "learning_rate": 5e-3, "max_steps": 12,
            "per_device_train_batch_size": 8, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
            "lr_scheduler_type": "constant", **keys}
    return config_from_flat(flat)


def rows(tokenizer):
    out = []
    for i in range(16):
        prompt = tokenizer(f"Q: what is {i % 4} plus one?\nA:", add_special_tokens=False)["input_ids"]
        answer = tokenizer(f" {i % 4 + 1}", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append({"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer})
    return Dataset.from_list(out)


def collate(features):
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.tensor([f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features])
    labels = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in features])
    mask = torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features])
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def mean_loss(model, data) -> float:
    model.eval()
    with torch.no_grad():
        return float(model(**collate(list(data))).loss)


def train(cfg, tmp_path):
    """Train ``cfg`` with the kubetune trainer; returns (model, loss before, loss after, optimizer)."""
    tokenizer = load_tokenizer(cfg.model)
    run = SimpleNamespace(tokenizer=tokenizer, fsdp_layers=[], args=SimpleNamespace(local_rank=-1))
    model = load_trainable(cfg, run)
    data = rows(tokenizer)
    before = mean_loss(model, data)
    args = training_arguments(cfg, tmp_path / "trainer", [], disable_tqdm=True)
    trainer = KubetuneTrainer(model=model, args=args, train_dataset=data, data_collator=collate,
                              processing_class=tokenizer, optimizer_keys=cfg.optimizer)
    trainer.train()
    return model, before, mean_loss(model, data), getattr(trainer.optimizer, "optimizer", trainer.optimizer)


@pytest.mark.parametrize("keys", [
    {"use_galore": True, "galore_rank": 8, "galore_update_interval": 4},
    {"use_galore": True, "galore_rank": 8, "galore_layerwise": True},
    {"use_apollo": True, "apollo_rank": 8, "apollo_update_interval": 4, "apollo_scale": 1.0},
    {"use_apollo": True, "apollo_rank": 8, "apollo_proj": "svd", "apollo_scale_front": True, "apollo_scale": 1.0},
], ids=["galore", "galore-layerwise", "apollo", "apollo-svd-scale-front"])
def test_low_rank_optimizers_train_the_projected_matrices(keys, model_dir, tmp_path):
    cfg = make_cfg(model_dir, tmp_path, **keys)
    model, before, after, optimizer = train(cfg, tmp_path)
    assert after < before * 0.8, (before, after)
    inner = getattr(optimizer, "optimizer_dict", None)
    groups = [g for o in (inner.values() if isinstance(inner, dict) else [optimizer]) for g in o.param_groups]
    projected = [g for g in groups if "rank" in g]
    assert projected and all(g["rank"] == 8 for g in projected)
    # every decoder linear layer is projected (7 per layer), never the output head
    head = model.lm_head.weight
    assert sum(len(g["params"]) for g in projected) == 2 * 7
    assert not any(p is head for g in projected for p in g["params"])


def test_badam_updates_one_block_at_a_time(model_dir, tmp_path):
    cfg = make_cfg(model_dir, tmp_path, use_badam=True, badam_switch_interval=50, badam_start_block=1)
    start = {n: p.detach().clone() for n, p in load_trainable(cfg, SimpleNamespace(
        tokenizer=load_tokenizer(cfg.model), fsdp_layers=[], args=SimpleNamespace(local_rank=-1))).named_parameters()}
    model, before, after, optimizer = train(cfg, tmp_path)
    assert after < before, (before, after)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), start[n])}
    assert changed and all(n.startswith("model.layers.1.") for n in changed), sorted(changed)
    assert type(optimizer).__name__ == "BlockOptimizer"


def test_badam_ratio_mode_trains(model_dir, tmp_path):
    cfg = make_cfg(model_dir, tmp_path, use_badam=True, badam_mode="ratio", badam_update_ratio=0.5)
    _, before, after, optimizer = train(cfg, tmp_path)
    assert after < before, (before, after)
    assert type(optimizer).__name__ == "BlockOptimizerRatio"


def test_low_rank_arguments_follow_llamafactorys_keys():
    cfg = config_from_flat({"model_name_or_path": "m", "dataset": "d", "output_dir": "o", "finetuning_type": "full",
                            "use_galore": True, "galore_target": "q_proj,v_proj", "optim": "adamw_bnb_8bit"})
    assert low_rank_arguments(cfg.optimizer, cfg.training.optim) == {
        "optim": "galore_adamw_8bit", "optim_target_modules": ["q_proj", "v_proj"],
        "optim_args": "rank=16,update_proj_gap=200,scale=2.0,proj_type=std"}
    cfg = config_from_flat({"model_name_or_path": "m", "dataset": "d", "output_dir": "o", "finetuning_type": "full",
                            "use_apollo": True, "apollo_layerwise": True})
    assert low_rank_arguments(cfg.optimizer, cfg.training.optim) == {
        "optim": "apollo_adamw_layerwise", "optim_target_modules": ALL_LINEAR_BUT_HEADS,
        "optim_args": "rank=16,proj=random,scale_type=channel,update_proj_gap=200,scale=32.0,proj_type=std"}


@pytest.mark.parametrize(("keys", "message"), [
    ({"use_galore": True, "use_badam": True}, "use_galore and use_badam: choose one"),
    ({"use_apollo": True, "finetuning_type": "lora"}, "use_apollo cannot be combined with finetuning_type lora"),
    ({"use_galore": True, "galore_layerwise": True, "gradient_accumulation_steps": 2},
     "galore_layerwise steps during backward: gradient_accumulation_steps must be 1"),
    ({"use_galore": True, "deepspeed": "ds_z2"}, "use_galore does not work with DeepSpeed"),
    ({"use_badam": True, "stage": "dpo"}, "use_badam does not apply to stage dpo"),
    ({"use_apollo": True, "stage": "ppo", "reward_model": "http://x/score", "reward_model_type": "api"},
     "use_apollo does not apply to stage ppo"),
    ({"use_badam": True, "fsdp": "full_shard"}, "use_badam runs on one process or with ddp, not fsdp"),
    ({"use_badam": True, "badam_switch_interval": 0}, "badam_switch_interval must be positive"),
])
def test_optimizer_rules_name_the_keys(keys, message):
    flat = {"model_name_or_path": "m", "dataset": "d", "output_dir": "o", "finetuning_type": "full", **keys}
    with pytest.raises(ConfigError, match=message):
        config_from_flat(flat)
