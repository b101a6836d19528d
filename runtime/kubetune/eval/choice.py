"""Score multiple-choice prompts: the model's choice is the option letter with the highest next-token logit.

One forward pass per batch (no generation), as LLaMA-Factory's evaluator does: prompts are right-padded, the
logits at each prompt's last position are restricted to the token ids of the option letters, argmax wins.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import torch


def letter_token_ids(tokenizer: Any, count: int) -> list[int]:
    """Token id of each option letter as it follows "Answer:" (the last token of the letter alone)."""
    return [tokenizer.encode(letter, add_special_tokens=False)[-1] for letter in string.ascii_uppercase[:count]]


@torch.inference_mode()
def choose(model: Any, prompts: Sequence[list[int]], choice_ids: Sequence[list[int]], pad_id: int,
           batch_size: int) -> list[int]:
    """The index of the chosen option for each prompt.

    Args:
        model: a causal LM.
        prompts: token ids of each prompt (ending where the answer letter would follow).
        choice_ids: for each prompt, the token ids of its option letters.
        pad_id: id used for right padding (masked out, never attended to).
        batch_size: prompts per forward pass.
    """
    device = next(model.parameters()).device
    picks: list[int] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            ids[row, : len(prompt)] = torch.tensor(prompt)
            mask[row, : len(prompt)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for row, prompt in enumerate(batch):
            options = logits[row, len(prompt) - 1, list(choice_ids[start + row])]
            picks.append(int(torch.argmax(options)))  # ties go to the first option
    return picks
