"""The loss on labelled positions only equals transformers' stock causal-LM loss, value and gradients.

Each case runs ``KubetuneTrainer.compute_loss`` (the labelled path) and ``Trainer.compute_loss`` (the stock forward
over every position) on the same fp32 model and batch: padded SFT rows with masked prompts, plain packed rows,
neat packing as one padded row per bin and as one flattened row, with LoRA, full and freeze tuning, with the
Trainer's ``num_items_in_batch`` over two accumulated micro-batches and without it.
"""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainingArguments

from kubetune.config import config_from_flat
from kubetune.data.collators import FlatteningCollator, PackedRowsCollator, PaddingCollator
from kubetune.data.packing import pack_bins
from kubetune.model.adapters import apply_method
from kubetune.model.loader import load_model
from kubetune.train import lm_head
from kubetune.train.causal_loss import plain_head_parts
from kubetune.train.trainer import KubetuneTrainer
from tests.support.gradients import accumulated

pytestmark = pytest.mark.slow

METHODS = {"lora": {"finetuning_type": "lora", "lora_rank": 4, "lora_target": "all"},
           "full": {"finetuning_type": "full"},
           "freeze": {"finetuning_type": "freeze", "freeze_trainable_layers": 1}}
# Prompt (masked) then answer, as the sft data layer produces.
EXAMPLES = [([5, 17, 99, 3], [42, 8, 250]), ([7, 7], [120, 64, 31, 2]), ([300, 12, 9, 81, 33, 4], [55]),
            ([11, 22, 33], [44, 55, 66, 77, 88]), ([400, 401], [402, 403])]


def sft_features() -> list[dict[str, list[int]]]:
    return [{"input_ids": p + a, "labels": [-100] * len(p) + a} for p, a in EXAMPLES]


def batches(layout: str) -> list[dict[str, torch.Tensor]]:
    """Two micro-batches of ``layout``."""
    feats = sft_features()
    halves = [feats[:3], feats[3:]]
    if layout == "padded":
        return [PaddingCollator(pad_token_id=0)(h) for h in halves]
    if layout == "packing":  # plain packing: concatenated examples in fixed blocks, every token a label
        ids = [t for f in feats for t in f["input_ids"]]
        return [{"input_ids": torch.tensor([ids[:12], ids[12:24]]), "labels": torch.tensor([ids[:12], ids[12:24]])},
                {"input_ids": torch.tensor([ids[24:36]]), "labels": torch.tensor([ids[24:36]])}]
    bins = pack_bins(feats, capacity=12)
    assert len(bins) >= 3
    collate = PackedRowsCollator(pad_token_id=0) if layout == "neat_rows" else FlatteningCollator()
    return [collate(bins[:2]), collate(bins[2:])]


def make_model(model_dir, tmp_path, method: str):
    cfg = config_from_flat({"model_name_or_path": str(model_dir), "dataset": "unused",
                            "output_dir": str(tmp_path / "out"), "gradient_checkpointing": False,
                            **METHODS[method]})
    torch.manual_seed(0)
    model = load_model(cfg.model, cfg.method, precision="fp32", gradient_checkpointing=False)
    return apply_method(model, cfg.method, cfg.model)


def make_trainer(model, tmp_path) -> KubetuneTrainer:
    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to=[], use_cpu=True,
                             gradient_accumulation_steps=2)
    return KubetuneTrainer(model=model, args=args)


@pytest.mark.parametrize("layout", ["padded", "packing", "neat_rows", "neat_flat"])
@pytest.mark.parametrize("method", ["lora", "full", "freeze"])
@pytest.mark.parametrize("counted", [True, False], ids=["num_items", "mean"])
def test_labelled_loss_equals_stock(tiny_llama, tmp_path, layout, method, counted):
    model = make_model(tiny_llama, tmp_path, method)
    trainer = make_trainer(model, tmp_path)
    micro = batches(layout)
    assert trainer.labelled_loss_parts(model, micro[0], return_outputs=False) is not None
    trainer.model_accepts_loss_kwargs = counted
    # The Trainer's own count: labels[..., 1:] over the accumulated micro-batches.
    num_items = sum(int((b["labels"][..., 1:] != -100).sum()) for b in micro) if counted else None
    if layout != "packing":
        skipped = sum(int((b["labels"] == -100).sum()) for b in micro)
        assert skipped > 0  # the case has positions without a label

    def stock(m, inputs, num_items_in_batch):
        return Trainer.compute_loss(trainer, m, inputs, num_items_in_batch=num_items_in_batch)

    ref_loss, ref_grads = accumulated(stock, model, micro, num_items)
    loss, grads = accumulated(trainer.compute_loss, model, micro, num_items)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    assert grads.keys() == ref_grads.keys() and grads
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_chunks_with_recomputation_match_one_chunk(tiny_llama, tmp_path):
    """Several chunks (logits recomputed in the backward pass) give the loss, log-probs and gradients of one."""
    model = make_model(tiny_llama, tmp_path, "full")
    parts = plain_head_parts(model)
    assert parts is not None
    torch.manual_seed(1)
    hidden = torch.randn(37, model.config.hidden_size, requires_grad=True)
    targets = torch.randint(0, parts.vocab_size, (37,))

    def run(fn, chunk):
        model.zero_grad()
        hidden.grad = None
        out = fn(hidden, parts.lm_head, targets, chunk)
        out.sum().backward()
        return out.detach(), hidden.grad.clone(), parts.lm_head.weight.grad.clone()

    for fn in (lm_head.labelled_cross_entropy, lm_head.labelled_token_logps):
        whole = run(fn, 64)
        chunked = run(fn, 5)
        for a, b in zip(chunked, whole, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    expected = torch.log_softmax(parts.lm_head(hidden).double(), -1).gather(-1, targets[:, None])[:, 0]
    got = lm_head.labelled_token_logps(hidden, parts.lm_head, targets, 5)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    assert lm_head.chunk_size(128_000) == 131 and lm_head.chunk_size(10**9) == 1


def test_no_labelled_position_gives_zero_sum_and_nan_mean():
    head = torch.nn.Linear(4, 7, bias=False)
    hidden = torch.randn(2, 3, 4, requires_grad=True)
    kept, targets = lm_head.labelled_hidden(hidden, torch.full((2, 3), -100))
    total = lm_head.labelled_cross_entropy(kept, head, targets, 8)
    assert total.item() == 0.0 and total.requires_grad
    assert lm_head.labelled_token_logps(kept, head, targets, 8).shape == (0,)


def gemma2(softcap):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                          final_logit_softcapping=softcap)
    return Gemma2ForCausalLM(config)


def test_logit_softcapping_takes_the_stock_path(tmp_path):
    softcapped = gemma2(30.0)
    assert plain_head_parts(softcapped) is None
    trainer = make_trainer(softcapped, tmp_path)
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4]]), "labels": torch.tensor([[-100, 2, 3, 4]])}
    assert trainer.labelled_loss_parts(softcapped, batch, return_outputs=False) is None
    loss = trainer.compute_loss(softcapped, dict(batch))
    torch.testing.assert_close(loss, softcapped(**batch, use_cache=False).loss)
    assert plain_head_parts(gemma2(None)) is not None  # the same family without softcapping is plain


def test_other_cases_take_the_stock_path(tiny_llama, tmp_path):
    model = make_model(tiny_llama, tmp_path, "lora")
    trainer = make_trainer(model, tmp_path)
    batch = batches("padded")[0]
    assert trainer.labelled_loss_parts(model, batch, return_outputs=True) is None  # evaluation wants logits
    assert trainer.labelled_loss_parts(model, {**batch, "pixel_values": torch.zeros(1)}, False) is None
    assert trainer.labelled_loss_parts(model, {k: v for k, v in batch.items() if k != "labels"}, False) is None
    from transformers import LlamaForSequenceClassification

    assert plain_head_parts(LlamaForSequenceClassification(model.base_model.model.config)) is None  # a reward model
    model.base_model.model.config.output_router_logits = True  # an MoE router loss is added after the head
    assert plain_head_parts(model) is None


def test_flops_count_parameters_once(tiny_llama, tmp_path):
    model = make_model(tiny_llama, tmp_path, "lora")
    trainer = make_trainer(model, tmp_path)
    batch = batches("padded")[0]
    expected = Trainer.floating_point_ops(trainer, batch)
    calls = []
    count = model.num_parameters
    model.num_parameters = lambda **kw: calls.append(kw) or count(**kw)
    assert [trainer.floating_point_ops(batch) for _ in range(3)] == [expected] * 3 and expected > 0
    assert calls == [{"exclude_embeddings": True}]
