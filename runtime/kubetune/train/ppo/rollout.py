"""Rollouts for PPO: sample answers from the policy, then read log-probabilities and values off one forward pass.

Sequences are laid out ``[left padding | prompt | response | right padding]``: prompts are left-padded to a
common length P so every response starts at column P, and ``position_ids`` skip the padding. The value head is a
linear layer on the policy's last hidden state (it shares the policy's body, as TRL's value-head models did),
so the value of the state before response token t sits at column P - 1 + t, next to the logits predicting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

VALUE_HEAD_NAME = "value_head.safetensors"


class ValueHead(nn.Module):
    """hidden state -> scalar value (a small-initialised linear layer, fp32)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.summary.weight, std=1.0 / (hidden_size + 1))
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


@dataclass
class Rollout:
    """One batch of sampled answers. ``input_ids``/``attention_mask`` cover prompt and response."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_len: int
    response_mask: torch.Tensor  # [batch, response_len]: 1 on real response tokens

    @property
    def responses(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len:]


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask for a batch of prompts."""
    longest = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def response_mask(responses: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """1 up to and including the first stop token of each response, 0 after it."""
    is_stop = torch.isin(responses, torch.tensor(stop_ids, device=responses.device))
    after_stop = (is_stop.long().cumsum(dim=1) - is_stop.long()) > 0
    return (~after_stop).long()


@torch.no_grad()
def sample(policy: Any, prompts: list[list[int]], pad_id: int, stop_ids: list[int],
           generation: dict[str, Any]) -> Rollout:
    """Sample one answer per prompt (``generation``: max_new_tokens, do_sample, temperature, top_p, top_k)."""
    device = next(policy.parameters()).device
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    policy.eval()
    out = policy.generate(input_ids=ids, attention_mask=mask, pad_token_id=pad_id, eos_token_id=stop_ids,
                          use_cache=True, **generation)
    policy.train()
    responses = out[:, ids.shape[1]:]
    resp_mask = response_mask(responses, stop_ids)
    responses = responses.masked_fill(resp_mask == 0, pad_id)
    return Rollout(torch.cat([ids, responses], dim=1), torch.cat([mask, resp_mask], dim=1), ids.shape[1], resp_mask)


def forward(model: Any, rollout: Rollout, temperature: float, value_head: ValueHead | None = None,
            rows: torch.Tensor | slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log-probabilities of the response tokens, values of the states before them) for ``rows``."""
    ids, mask = rollout.input_ids[rows], rollout.attention_mask[rows]
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                output_hidden_states=value_head is not None)
    start, end = rollout.prompt_len - 1, ids.shape[1] - 1
    logits = out.logits[:, start:end].float() / max(temperature, 1e-7)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, start + 1:, None]).squeeze(-1)
    values = value_head(out.hidden_states[-1][:, start:end]) if value_head is not None else None
    return logprobs, values
