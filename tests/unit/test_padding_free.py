"""Padding-free training on sdpa: a flattened row with per-example attention (kubetune.model.varlen) trains exactly
like the padded batch, and every call that is not such a row takes transformers' own sdpa path."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from kubetune.config import config_from_flat
from kubetune.data.collators import FlatteningCollator, PackedRowsCollator, PaddingCollator
from kubetune.data.packing import pack_bins
from kubetune.model.adapters import apply_method
from kubetune.model.loader import load_model
from kubetune.model.varlen import VARLEN_SDPA, register, sdpa_varlen_attention, segment_bounds, use_varlen_sdpa
from kubetune.train.trainer import KubetuneTrainer
from kubetune.train.workflow import collator_for, padding_free_applies, use_padding_free
from tests.support.gradients import accumulated

pytestmark = pytest.mark.slow

METHODS = {"lora": {"finetuning_type": "lora", "lora_rank": 4, "lora_target": "all"},
           "full": {"finetuning_type": "full"}}
# Prompt (masked) then answer, as the sft data layer produces.
EXAMPLES = [([5, 17, 99, 3], [42, 8, 250]), ([7, 7], [120, 64, 31, 2]), ([300, 12, 9, 81, 33, 4], [55]),
            ([11, 22, 33], [44, 55, 66, 77, 88]), ([400, 401], [402, 403])]


def features() -> list[dict[str, list[int]]]:
    return [{"input_ids": p + a, "labels": [-100] * len(p) + a} for p, a in EXAMPLES]


def flat_cfg(model_dir, tmp_path, **keys):
    return config_from_flat({"model_name_or_path": str(model_dir), "dataset": "unused", "stage": "sft",
                             "output_dir": str(tmp_path / "out"), "gradient_checkpointing": False, **keys})


def make_model(model_dir, tmp_path, method: str):
    cfg = flat_cfg(model_dir, tmp_path, **METHODS[method])
    torch.manual_seed(0)
    model = load_model(cfg.model, cfg.method, precision="fp32", gradient_checkpointing=False)
    return apply_method(model, cfg.method, cfg.model)


def assert_same(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, atol=1e-5, rtol=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, atol=1e-5, rtol=1e-4, msg=name)


class SdpaSpy:
    """Records the query length and mask of every scaled_dot_product_attention call."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[int, bool]] = []
        real = torch.nn.functional.scaled_dot_product_attention

        def spy(query, key, value, attn_mask=None, **kwargs):
            self.calls.append((query.shape[-2], attn_mask is not None))
            return real(query, key, value, attn_mask=attn_mask, **kwargs)

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)


def test_segment_bounds():
    assert segment_bounds(torch.tensor([0, 1, 2, 0, 1, 0, 1, 2, 3])) == [0, 3, 5, 9]
    assert segment_bounds(torch.tensor([4, 5, 6])) == [0, 3]  # one sequence, not starting at 0


def test_attention_equals_stock_sdpa(monkeypatch):
    module = SimpleNamespace(num_key_value_groups=2, is_causal=True)  # GQA: 4 query heads on 2 key/value heads
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 9, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    one = torch.arange(9)[None]
    out, _ = sdpa_varlen_attention(module, q, k, v, None, scaling=0.3, position_ids=one)
    torch.testing.assert_close(out, sdpa_attention_forward(module, q, k, v, None, scaling=0.3)[0])

    # Three examples in one row: each slice attends to itself only, as if it were alone; no mask is built.
    spy = SdpaSpy(monkeypatch)
    packed = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    out, _ = sdpa_varlen_attention(module, q, k, v, None, scaling=0.3, position_ids=packed)
    assert spy.calls == [(3, False), (2, False), (4, False)]
    for s, e in [(0, 3), (3, 5), (5, 9)]:
        alone = sdpa_attention_forward(module, q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], None, scaling=0.3)[0]
        torch.testing.assert_close(out[:, s:e], alone)
    cu = torch.tensor([0, 3, 5, 9], dtype=torch.int32)
    by_cu, _ = sdpa_varlen_attention(module, q, k, v, None, scaling=0.3, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    torch.testing.assert_close(by_cu, out)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("counted", [True, False], ids=["num_items", "mean"])
def test_padded_batch_trains_like_flattened_varlen(request, tmp_path, monkeypatch, arch, method, counted):
    """Two accumulated micro-batches: padded on stock sdpa vs flattened on the varlen attention (loss, grads)."""
    model = make_model(request.getfixturevalue(f"tiny_{arch}"), tmp_path, method)
    trainer = KubetuneTrainer(model=model, args=TrainingArguments(
        output_dir=str(tmp_path / "t"), report_to=[], use_cpu=True, gradient_accumulation_steps=2))
    trainer.model_accepts_loss_kwargs = counted
    halves = [features()[:3], features()[3:]]
    padded = [PaddingCollator(pad_token_id=0)(h) for h in halves]
    flat = [FlatteningCollator()(h) for h in halves]
    count = sum(int((b["labels"][..., 1:] != -100).sum()) for b in padded)
    assert count == sum(int((b["labels"][..., 1:] != -100).sum()) for b in flat)  # the Trainer's count agrees

    def stock(m, inputs, num_items_in_batch):
        return Trainer.compute_loss(trainer, m, inputs, num_items_in_batch=num_items_in_batch)

    reference = accumulated(stock, model, padded, count if counted else None)
    use_varlen_sdpa(model)
    assert model.config._attn_implementation == VARLEN_SDPA
    spy = SdpaSpy(monkeypatch)
    assert_same(reference, accumulated(trainer.compute_loss, model, flat, count if counted else None))
    lengths = sorted({len(p) + len(a) for p, a in EXAMPLES})
    assert spy.calls and all(not masked and n in lengths for n, masked in spy.calls)


def test_neat_packing_flattened_equals_rows(tiny_llama, tmp_path):
    model = make_model(tiny_llama, tmp_path, "full")
    trainer = KubetuneTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "t"), report_to=[],
                                                                  use_cpu=True))
    bins = pack_bins(features(), capacity=12)
    assert len(bins) >= 3
    rows = [PackedRowsCollator(pad_token_id=0)(bins[:2]), PackedRowsCollator(pad_token_id=0)(bins[2:])]
    flat = [FlatteningCollator()(bins[:2]), FlatteningCollator()(bins[2:])]
    count = sum(int((b["labels"][..., 1:] != -100).sum()) for b in rows)
    reference = accumulated(trainer.compute_loss, model, rows, count)
    use_varlen_sdpa(model)
    assert_same(reference, accumulated(trainer.compute_loss, model, flat, count))


def test_cache_and_padding_take_the_stock_path(tiny_llama):
    """Generation (KV cache, left padding) and a padded forward give what sdpa gives."""
    stock = AutoModelForCausalLM.from_pretrained(str(tiny_llama), attn_implementation="sdpa").eval()
    register()
    varlen = AutoModelForCausalLM.from_pretrained(str(tiny_llama), attn_implementation=VARLEN_SDPA).eval()
    ids = torch.tensor([[0, 0, 5, 17, 99], [7, 7, 120, 64, 31]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        torch.testing.assert_close(varlen(input_ids=ids, attention_mask=mask).logits,
                                   stock(input_ids=ids, attention_mask=mask).logits)
        gen = {"attention_mask": mask, "max_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
        assert torch.equal(varlen.generate(ids, **gen), stock.generate(ids, **gen))


def run_of(cfg, world_size: int = 1):
    return SimpleNamespace(args=SimpleNamespace(world_size=world_size), processor=None, tokenizer=None,
                           bundle=SimpleNamespace(collator="bundle collator"))


def test_when_it_applies(tiny_llama, tmp_path):
    cfg = flat_cfg(tiny_llama, tmp_path, finetuning_type="lora", lora_target="all")
    model = apply_method(load_model(cfg.model, cfg.method, precision="fp32", gradient_checkpointing=False),
                         cfg.method, cfg.model)
    assert padding_free_applies(cfg, run_of(cfg), model)
    assert not padding_free_applies(cfg, run_of(cfg, world_size=2), model)
    off = flat_cfg(tiny_llama, tmp_path, padding_free=False)
    assert not padding_free_applies(off, run_of(off), model)
    pt = flat_cfg(tiny_llama, tmp_path, stage="pt")
    assert pt.data.packing and not padding_free_applies(pt, run_of(pt), model)  # cross-attending packing
    neat = flat_cfg(tiny_llama, tmp_path, packing=True, neat_packing=True)
    assert not padding_free_applies(neat, run_of(neat), model)  # one row per bin: nothing to gain
    assert collator_for(cfg, run_of(cfg), model) == "bundle collator"
    assert use_padding_free(cfg, run_of(cfg), model)
    assert model.config._attn_implementation == VARLEN_SDPA
    assert isinstance(collator_for(cfg, run_of(cfg), model), FlatteningCollator)
    assert VARLEN_SDPA not in model.config.to_json_string()  # a saved model loads anywhere

    eager_cfg = flat_cfg(tiny_llama, tmp_path, flash_attn="disabled")
    eager = load_model(eager_cfg.model, eager_cfg.method, precision="fp32", gradient_checkpointing=False)
    assert not use_padding_free(eager_cfg, run_of(eager_cfg), eager)
    assert collator_for(eager_cfg, run_of(eager_cfg), eager) == "bundle collator"


def test_model_outside_the_allowlist_keeps_sdpa(tmp_path):
    from transformers import PhiConfig, PhiForCausalLM

    config = PhiConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2)
    PhiForCausalLM(config).save_pretrained(tmp_path / "phi")
    cfg = flat_cfg(tmp_path / "phi", tmp_path)
    model = load_model(cfg.model, cfg.method, precision="fp32", gradient_checkpointing=False)
    assert not use_padding_free(cfg, run_of(cfg), model)
    assert model.config._attn_implementation == "sdpa"
