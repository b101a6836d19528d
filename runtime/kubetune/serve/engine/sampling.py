"""Per-row logits processing and sampling for batched generation with different settings per request.

transformers' own warpers take one value for the whole batch; here each row carries its request's
temperature, top-k, top-p and penalties. The classes follow the ``LogitsProcessor`` call signature
``(input_ids, scores) -> scores`` so they also work inside ``model.generate``.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class OpenAIPenaltyLogitsProcessor(LogitsProcessor):
    """OpenAI's presence and frequency penalties: additive, over the tokens generated so far.

    ``logit[j] -= frequency * count[j] + presence * (count[j] > 0)``, where ``count[j]`` is how often token j
    occurs in the row's completion. This is not ``repetition_penalty`` (a multiplicative factor that also
    counts prompt tokens). ``input_ids`` holds completion tokens only; negative ids are padding.
    """

    def __init__(self, presence: torch.Tensor, frequency: torch.Tensor):
        self.presence = presence
        self.frequency = frequency

    # transformers annotates logits processors with the legacy LongTensor/FloatTensor classes, which no tensor
    # operation returns; these take and return plain tensors (LogitsProcessor.__call__ is untyped for mypy).
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] == 0:
            return scores
        valid = (input_ids >= 0).to(scores.dtype)
        counts = torch.zeros_like(scores).scatter_add_(1, input_ids.clamp(min=0), valid)
        penalty = self.frequency[:, None] * counts + self.presence[:, None] * (counts > 0).to(scores.dtype)
        return scores - penalty


class RowwiseSamplingWarper(LogitsProcessor):
    """Temperature, top-k and top-p with one value per row (rows with temperature 0 are left unscaled)."""

    def __init__(self, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor):
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        del input_ids
        temperature = torch.where(self.temperature > 0, self.temperature, torch.ones_like(self.temperature))
        scores = scores / temperature[:, None]
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        rank = torch.arange(scores.shape[-1], device=scores.device)[None, :]
        k = torch.where(self.top_k > 0, self.top_k, torch.full_like(self.top_k, scores.shape[-1]))
        drop = rank >= k[:, None]
        probs = sorted_scores.masked_fill(drop, float("-inf")).softmax(dim=-1)
        # keep the smallest prefix whose mass reaches top_p: drop a token when the mass before it already does
        drop |= (probs.cumsum(dim=-1) - probs) >= self.top_p[:, None]
        drop[:, 0] = False
        return scores.scatter(1, order, sorted_scores.masked_fill(drop, float("-inf")))


def sample_rows(scores: torch.Tensor, greedy: list[bool], generators: list[torch.Generator | None]) -> torch.Tensor:
    """One token per row: argmax where ``greedy``, else a draw from softmax(scores) with the row's generator.

    ``greedy`` is a Python list so the all-greedy case costs no device synchronisation.
    """
    out = scores.argmax(dim=-1)
    if all(greedy):
        return out
    probs = scores.float().softmax(dim=-1)
    for row, generator in enumerate(generators):
        if not greedy[row]:
            out[row] = torch.multinomial(probs[row], 1, generator=generator)[0]
    return out
