"""Neat packing keeps examples apart: an example's logits are the same packed with others as alone.

transformers builds a block-diagonal causal mask from restarting position_ids when there is no attention mask
and no KV cache (the Trainer runs with use_cache=False), for eager and sdpa attention alike.
"""

from __future__ import annotations

import pytest
import torch

from kubetune.data.collators import FlatteningCollator, PaddingCollator
from kubetune.data.packing import pack_bins

SEQS = [[5, 17, 99, 3, 42, 8, 250], [7, 7, 120, 64], [300, 12, 9, 81, 33]]


def _spans(position_ids: list[int]) -> list[tuple[int, int]]:
    starts = [i for i, p in enumerate(position_ids) if p == 0]
    return list(zip(starts, [*starts[1:], len(position_ids)], strict=True))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_unpacked(tiny_llama, attn):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), attn_implementation=attn).eval()
    bins = pack_bins([{"input_ids": s, "labels": s} for s in SEQS], capacity=32)
    assert len(bins) == 1  # all three examples share one row
    batch = FlatteningCollator()(bins)
    spans = _spans(batch["position_ids"][0].tolist())
    assert len(spans) == 3
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        for a, b in spans:
            alone = model(input_ids=batch["input_ids"][:, a:b], use_cache=False).logits[0]
            torch.testing.assert_close(packed[a:b], alone, atol=1e-5, rtol=1e-4)
        # The same row without restarting positions mixes the examples: the check above can fail.
        mixed = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    a, b = spans[1]
    assert not torch.allclose(mixed[a:b], packed[a:b], atol=1e-3)


def test_padded_batch_matches_too(tiny_llama):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), attn_implementation="sdpa").eval()
    batch = PaddingCollator(pad_token_id=0)([{"input_ids": s, "labels": s} for s in SEQS])
    with torch.no_grad():
        padded = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        for i, s in enumerate(SEQS):
            alone = model(input_ids=torch.tensor([s]), use_cache=False).logits[0]
            torch.testing.assert_close(padded[i, : len(s)], alone, atol=1e-5, rtol=1e-4)


def _bins() -> list[dict[str, list[int]]]:
    rows = [{"input_ids": s, "labels": [-100, *s[1:]]} for s in
            [*SEQS, [11, 22, 33, 44, 55, 66, 77, 88, 99], [400, 401, 402], [9, 8, 7, 6, 5, 4]]]
    bins = pack_bins(rows, capacity=12)
    assert len(bins) >= 3 and any(len(b["input_ids"]) < 12 for b in bins)  # rows of unequal length get padding
    return bins


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(**batch, use_cache=False).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_train_like_one_flat_row(tiny_llama, attn):
    """One padded row per bin (sdpa/eager layout) gives the loss and gradients of the flattened batch."""
    from transformers import AutoModelForCausalLM

    from kubetune.data.collators import PackedRowsCollator

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), attn_implementation=attn)
    bins = _bins()
    flat = FlatteningCollator()(bins)
    rows = PackedRowsCollator(pad_token_id=0)(bins)
    assert rows["input_ids"].shape[0] == len(bins) and flat["input_ids"].shape[0] == 1
    assert int((rows["labels"] != -100).sum()) == int((flat["labels"] != -100).sum())
    flat_loss, flat_grads = _loss_and_grads(model, flat)
    rows_loss, rows_grads = _loss_and_grads(model, rows)
    torch.testing.assert_close(rows_loss, flat_loss, atol=1e-6, rtol=1e-6)
    assert flat_grads.keys() == rows_grads.keys()
    for name, grad in flat_grads.items():
        torch.testing.assert_close(rows_grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)
    # Without the restart of positions in the padding, the padding would join the last example: it would then
    # attend to it, which the equal loss above could not show; check the padding forms its own segment.
    pos = rows["position_ids"]
    for i, b in enumerate(bins):
        n = len(b["input_ids"])
        assert pos[i, n:].tolist() == list(range(pos.shape[1] - n))


def test_neat_packing_layout_follows_attention():
    from kubetune.data.collators import PackedRowsCollator, neat_packing_collator

    assert isinstance(neat_packing_collator("flash_attention_2", 0), FlatteningCollator)
    assert isinstance(neat_packing_collator("sdpa", 0), PackedRowsCollator)
    assert isinstance(neat_packing_collator("eager", 0), PackedRowsCollator)


def test_training_picks_the_layout_of_the_loaded_model():
    from types import SimpleNamespace

    from kubetune.data.collators import PackedRowsCollator
    from kubetune.train.workflow import collator_for

    bundle_collator = FlatteningCollator()
    run = SimpleNamespace(bundle=SimpleNamespace(collator=bundle_collator),
                          tokenizer=SimpleNamespace(pad_token_id=None, eos_token_id=5))

    def model(attn):
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation=attn))

    neat = SimpleNamespace(data=SimpleNamespace(neat_packing=True))
    assert collator_for(neat, run, model("sdpa")) == PackedRowsCollator(pad_token_id=5)  # eos pads without a pad
    assert isinstance(collator_for(neat, run, model("flash_attention_2")), FlatteningCollator)
    plain = SimpleNamespace(data=SimpleNamespace(neat_packing=False))
    assert collator_for(plain, run, model("sdpa")) is bundle_collator
