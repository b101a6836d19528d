"""Loss and gradients accumulated over micro-batches, for tests that compare two ways of computing a loss."""

from __future__ import annotations

import torch


def accumulated(compute, model, micro, num_items):
    """Loss and gradients accumulated over the micro-batches as the Trainer's training_step builds them (division
    by the accumulation steps when the loss is a per-batch mean)."""
    model.zero_grad()
    total = torch.zeros(())
    for batch in micro:
        loss = compute(model, dict(batch), num_items_in_batch=num_items)
        if num_items is None:
            loss = loss / len(micro)
        loss.backward()
        total += loss.detach()
    return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
