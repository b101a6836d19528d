"""kubetune's lean DPO step against TRL 1.16's stock ``DPOTrainer._compute_loss`` on the same batch of a tiny Llama:
same loss, same rewards and log-prob metrics, same gradients, for every loss kubetune configures."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from kubetune.train.dpo import KubetuneDPOTrainer

# prompt / chosen / rejected ids of different lengths, so rows are padded differently and answers differ in length
ROWS = [
    {"prompt_ids": [5, 17, 33, 9], "chosen_ids": [40, 41, 42, 2], "rejected_ids": [50, 2]},
    {"prompt_ids": [7, 8], "chosen_ids": [60, 61, 2], "rejected_ids": [70, 71, 72, 73, 74, 2]},
    {"prompt_ids": [11, 12, 13, 14, 15, 16], "chosen_ids": [80, 2], "rejected_ids": [90, 91, 2]},
]
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected")


def make_trainer(model_dir, tmp_path, *, peft: bool, **config) -> KubetuneDPOTrainer:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref_model = None
    if peft:
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    else:
        ref_model = copy.deepcopy(model)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.02)
    args = DPOConfig(output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=len(ROWS),
                     max_length=None, use_cpu=True, bf16=False, **config)
    trainer = KubetuneDPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=Dataset.from_list(ROWS),
                                 processing_class=AutoTokenizer.from_pretrained(model_dir))
    if peft:
        with torch.no_grad():  # a trained-looking adapter, so the policy differs from the reference
            for name, param in trainer.model.named_parameters():
                if "lora_" in name and param.requires_grad:
                    param.normal_(0, 0.2)
    return trainer


def loss_metrics_grads(trainer, step) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
    trainer.model.train()
    trainer.model.zero_grad()
    trainer._metrics["train"].clear()
    batch = trainer.data_collator(ROWS)
    loss = step(trainer.model, batch, False)
    loss.backward()
    metrics = {key: trainer._metrics["train"][key][-1] for key in METRICS}
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), metrics, grads


CASES = {
    "sigmoid": ({"loss_type": ["sigmoid"], "beta": 0.1}, True),
    "ipo": ({"loss_type": ["ipo"], "beta": 0.1}, True),
    "hinge": ({"loss_type": ["hinge"], "beta": 0.5}, True),
    "robust": ({"loss_type": ["robust"], "beta": 0.1, "label_smoothing": 0.2}, True),
    "sigmoid+sft": ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5], "beta": 0.1}, True),
    "sigmoid, ld_alpha": ({"loss_type": ["sigmoid"], "beta": 0.1, "ld_alpha": 0.3}, True),
    "sigmoid, full with ref_model": ({"loss_type": ["sigmoid"], "beta": 0.1}, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lean_step_matches_trl(case, tiny_llama, tmp_path):
    config, peft = CASES[case]
    trainer = make_trainer(tiny_llama, tmp_path, peft=peft, **config)
    assert trainer.lean_step
    lean = loss_metrics_grads(trainer, trainer._compute_loss)
    stock = loss_metrics_grads(trainer, lambda *a: DPOTrainer._compute_loss(trainer, *a))
    torch.testing.assert_close(lean[0], stock[0], atol=1e-5, rtol=1e-5)
    assert lean[1] == pytest.approx(stock[1], abs=1e-5)
    assert lean[1]["rewards/margins"] != pytest.approx(0.0, abs=1e-4)  # policy and reference do differ
    assert lean[2].keys() == stock[2].keys() and lean[2]
    for name, grad in lean[2].items():
        torch.testing.assert_close(grad, stock[2][name], atol=1e-5, rtol=1e-4, msg=name)
    if peft:
        assert all("lora_" in name for name in lean[2])  # the base stayed frozen


def test_configs_the_lean_step_does_not_cover_use_trls(tiny_llama, tmp_path):
    trainer = make_trainer(tiny_llama, tmp_path, peft=True, loss_type=["bco_pair"], beta=0.1)
    assert not trainer.lean_step
    loss, _, _ = loss_metrics_grads(trainer, trainer._compute_loss)
    assert "entropy" in trainer._metrics["train"]  # TRL's stock step ran
    assert torch.isfinite(loss)
