"""Methods on a tiny Llama: full, freeze, LoRA, DoRA train what they should and nothing else; adapters reload."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, TrainingArguments

from kubetune.config import config_from_flat
from kubetune.model.adapters import (
    MethodError,
    apply_method,
    count_parameters,
    freeze_trainable,
    lora_targets,
)
from kubetune.model.loader import (
    QLORA_UNAVAILABLE,
    ModelLoadError,
    attention_implementation,
    load_model,
    load_tokenizer,
    quantization_config,
    resolve_precision,
)
from kubetune.train.trainer import KubetuneTrainer

pytestmark = pytest.mark.slow


def make_cfg(model_dir, tmp_path, **keys):
    flat = {"model_name_or_path": str(model_dir), "dataset": "unused", "output_dir": str(tmp_path / "out"),
            "gradient_checkpointing": False, **keys}
    return config_from_flat(flat)


def sft_rows(tokenizer, n: int = 16) -> Dataset:
    """Prompt tokens masked with -100, answers learned: the shape kubetune.data produces for sft."""
    rows = []
    for i in range(n):
        prompt = tokenizer(f"Q: what is {i % 4} plus one?\nA:", add_special_tokens=False)["input_ids"]
        answer = tokenizer(f" {i % 4 + 1}", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append({"input_ids": prompt + answer, "attention_mask": [1] * (len(prompt) + len(answer)),
                     "labels": [-100] * len(prompt) + answer})
    return Dataset.from_list(rows)


def batch_loss(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def train(model, tokenizer, tmp_path, lr: float, steps: int = 4, method=None):
    data = sft_rows(tokenizer)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=steps, learning_rate=lr,
                             per_device_train_batch_size=8, report_to="none", save_strategy="no",
                             logging_steps=1, disable_tqdm=True, remove_unused_columns=False,
                             dataloader_pin_memory=False, seed=0)
    trainer = KubetuneTrainer(model=model, args=args, train_dataset=data, data_collator=collator,
                              processing_class=tokenizer, loraplus=method)
    batch = collator([data[i] for i in range(8)])
    before = batch_loss(model, batch)
    trainer.train()
    return trainer, batch, before, batch_loss(model, batch)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    ("method", "keys", "lr"),
    [
        ("full", {"finetuning_type": "full"}, 1e-3),
        ("freeze", {"finetuning_type": "freeze", "freeze_trainable_layers": 1}, 1e-3),
        ("lora", {"finetuning_type": "lora", "lora_rank": 4}, 1e-2),
        ("dora", {"finetuning_type": "lora", "lora_rank": 4, "use_dora": True}, 1e-2),
    ],
)
def test_method_trains_what_it_should(method, keys, lr, tiny_llama, tmp_path):
    cfg = make_cfg(tiny_llama, tmp_path, **keys)
    tokenizer = load_tokenizer(cfg.model)
    torch.manual_seed(0)
    model = apply_method(load_model(cfg.model, cfg.method, precision="fp32", gradient_checkpointing=False),
                         cfg.method, cfg.model)
    start = snapshot(model)
    trainer, batch, before, after = train(model, tokenizer, tmp_path, lr)
    print(f"\n{method}: loss on a fixed batch {before:.4f} -> {after:.4f} after 4 steps")
    assert after < before - 0.05, f"{method}: loss {before:.4f} -> {after:.4f}"

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), start[n])}
    frozen = set(start) - trainable
    assert trainable and changed, method
    assert not (changed & frozen), f"{method}: frozen parameters moved: {sorted(changed & frozen)[:3]}"
    if method == "full":
        assert frozen == set()
    elif method == "freeze":
        assert all(".layers.1." in n for n in trainable) and any(".layers.0." in n for n in frozen)
        assert all(n in changed for n in trainable if "norm" not in n)
    else:
        assert all("lora_" in n for n in trainable)
        assert any("lora_B" in n for n in changed)  # B starts at zero: it must have learned
        if method == "dora":
            assert any("lora_magnitude_vector" in n for n in trainable)

    # The saved artifact reloads and gives the same logits as the trained model.
    out = tmp_path / "saved"
    trainer.save_model(str(out))
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    if method in ("lora", "dora"):
        from peft import PeftModel

        assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), out)
    else:
        assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
        reloaded = AutoModelForCausalLM.from_pretrained(out)
    reloaded.eval()
    with torch.no_grad():
        got = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_lora_options_reach_peft(tiny_llama, tmp_path):
    cfg = make_cfg(tiny_llama, tmp_path, lora_rank=4, lora_target="q_proj,v_proj", use_rslora=True,
                   lora_dropout=0.1, additional_target="embed_tokens")
    model = apply_method(load_model(cfg.model, cfg.method, precision="fp32", gradient_checkpointing=False),
                         cfg.method, cfg.model)
    peft_cfg = model.peft_config["default"]
    assert set(peft_cfg.target_modules) == {"q_proj", "v_proj"}
    assert peft_cfg.lora_alpha == 8 and peft_cfg.use_rslora and peft_cfg.lora_dropout == 0.1
    assert peft_cfg.modules_to_save == ["embed_tokens"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("embed_tokens.modules_to_save" in n for n in trainable)
    assert not any("k_proj.lora" in n for n in trainable)


def test_pissa_init_starts_from_principal_components(tiny_llama, tmp_path):
    cfg = make_cfg(tiny_llama, tmp_path, lora_rank=4, pissa_init=True, pissa_iter=2)
    model = apply_method(load_model(cfg.model, cfg.method, precision="fp32", gradient_checkpointing=False),
                         cfg.method, cfg.model)
    b = dict(model.named_parameters())["base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"]
    assert b.abs().sum() > 0  # plain LoRA starts B at zero; PiSSA starts from the top singular vectors


def test_loraplus_gives_b_matrices_a_larger_learning_rate(tiny_llama, tmp_path):
    cfg = make_cfg(tiny_llama, tmp_path, lora_rank=4, loraplus_lr_ratio=16.0)
    tokenizer = load_tokenizer(cfg.model)
    model = apply_method(load_model(cfg.model, cfg.method, precision="fp32", gradient_checkpointing=False),
                         cfg.method, cfg.model)
    trainer, _, before, after = train(model, tokenizer, tmp_path, lr=1e-3, steps=2, method=cfg.method)
    lrs = sorted({group["lr"] for group in trainer.optimizer.param_groups if group["params"]})
    assert lrs[-1] == pytest.approx(16 * lrs[0])
    assert after < before


def test_continue_training_an_adapter(tiny_llama, tmp_path):
    first = make_cfg(tiny_llama, tmp_path, lora_rank=4)
    tokenizer = load_tokenizer(first.model)
    model = apply_method(load_model(first.model, first.method, precision="fp32", gradient_checkpointing=False),
                         first.method, first.model)
    trainer, batch, _, after_first = train(model, tokenizer, tmp_path, lr=1e-2)
    trainer.save_model(str(tmp_path / "adapter"))

    again = make_cfg(tiny_llama, tmp_path, lora_rank=4, adapter_name_or_path=str(tmp_path / "adapter"))
    resumed = apply_method(load_model(again.model, again.method, precision="fp32", gradient_checkpointing=False),
                           again.method, again.model)
    assert batch_loss(resumed, batch) == pytest.approx(after_first, abs=1e-5)  # starts where the first run ended
    assert count_parameters(resumed)[0] == count_parameters(model)[0]

    stacked = make_cfg(tiny_llama, tmp_path, lora_rank=4, adapter_name_or_path=str(tmp_path / "adapter"),
                       create_new_adapter=True)
    fresh = apply_method(load_model(stacked.model, stacked.method, precision="fp32", gradient_checkpointing=False),
                         stacked.method, stacked.model)
    # The old adapter is merged into the base; a new one (B = 0) starts on top: same function, new parameters.
    assert batch_loss(fresh, batch) == pytest.approx(after_first, abs=1e-4)
    assert all(torch.all(p == 0) for n, p in fresh.named_parameters() if "lora_B" in n)


LAYER_NAMES = [
    "model.embed_tokens.weight",
    *[f"model.layers.{i}.{m}.weight" for i in range(4) for m in ("self_attn.q_proj", "mlp.up_proj",
                                                                  "input_layernorm")],
    "model.norm.weight",
    "lm_head.weight",
]


@pytest.mark.parametrize(
    ("layers", "modules", "extra", "expected"),
    [
        (1, ["all"], None, {"model.layers.3.self_attn.q_proj.weight", "model.layers.3.mlp.up_proj.weight",
                            "model.layers.3.input_layernorm.weight"}),
        (-1, ["mlp"], None, {"model.layers.0.mlp.up_proj.weight"}),
        (2, ["self_attn"], ["embed_tokens", "norm"], {"model.layers.2.self_attn.q_proj.weight",
                                                      "model.layers.3.self_attn.q_proj.weight",
                                                      "model.embed_tokens.weight", "model.norm.weight"}),
    ],
)
def test_freeze_selection(layers, modules, extra, expected):
    assert freeze_trainable(LAYER_NAMES, "model.layers", 4, layers, modules, extra) == expected


@pytest.mark.parametrize("layers", [0, 5, -5])
def test_freeze_layer_count_out_of_range(layers):
    with pytest.raises(MethodError, match="freeze_trainable_layers"):
        freeze_trainable(LAYER_NAMES, "model.layers", 4, layers, ["all"], None)


def test_lora_target_all_is_every_linear_but_the_head(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert lora_targets(model, ["all"]) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                                            "v_proj"]
    assert lora_targets(model, ["q_proj"]) == ["q_proj"]


@pytest.mark.parametrize(
    ("precision", "cuda", "bf16", "expected"),
    [("auto", False, False, "fp32"), ("auto", True, True, "bf16"), ("auto", True, False, "fp32"),
     ("fp16", True, False, "fp16"), ("bf16", False, False, "bf16")],
)
def test_precision(precision, cuda, bf16, expected):
    assert resolve_precision(precision, cuda, bf16) == expected


@pytest.mark.parametrize(
    ("flash_attn", "fa2", "cuda", "expected"),
    [("auto", False, False, "sdpa"), ("auto", True, True, "flash_attention_2"), ("auto", True, False, "sdpa"),
     ("disabled", True, True, "eager"), ("sdpa", True, True, "sdpa"), ("fa2", True, True, "flash_attention_2")],
)
def test_attention_implementation(flash_attn, fa2, cuda, expected):
    assert attention_implementation(flash_attn, fa2, False, cuda) == expected


def test_flash_attention_missing_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="fa2 needs the flash-attn package"):
        attention_implementation("fa2", False, False, True)


def test_qlora_without_gpu_says_what_to_do(tiny_llama, tmp_path):
    cfg = make_cfg(tiny_llama, tmp_path, finetuning_type="qlora")
    assert cfg.method.quantization_bit == 4
    for bnb, cuda in ((False, False), (True, False), (False, True)):
        with pytest.raises(ModelLoadError, match="use method lora on CPU") as err:
            quantization_config(cfg.method, torch.bfloat16, bnb, cuda)
        assert str(err.value) == QLORA_UNAVAILABLE
    assert quantization_config(make_cfg(tiny_llama, tmp_path).method, torch.bfloat16, False, False) is None


def test_qlora_config_when_available(tiny_llama, tmp_path):
    cfg = make_cfg(tiny_llama, tmp_path, finetuning_type="lora", quantization_bit=4, quantization_type="fp4",
                   double_quantization=False)
    quant = quantization_config(cfg.method, torch.bfloat16, True, True)
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "fp4" and not quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16
    eight = make_cfg(tiny_llama, tmp_path, finetuning_type="qlora", quantization_bit=8)
    assert quantization_config(eight.method, torch.bfloat16, True, True).load_in_8bit
