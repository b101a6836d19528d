"""PPO for language models as pure tensor functions (Schulman et al., 2017; Ziegler et al., 2019; the RLHF recipe
of Ouyang et al., 2022, as TRL's PPOTrainer up to 0.11 implemented it).

Shapes: ``[batch, response_len]`` per-token tensors and a ``mask`` that is 1 on real response tokens (0 after the
end of the answer). Everything here is deterministic and tested on literal tensors.

- reward per token: ``-kl_coef * (logp - ref_logp)``, plus the reward model's score on the last real token;
- advantages: generalised advantage estimation (Schulman et al., 2016) with ``gamma``/``lam``, whitened;
- loss: clipped policy surrogate + ``vf_coef`` x clipped value loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(values - mean) / std over the masked entries; ``shift_mean=False`` adds the mean back (rewards)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row (0 for an empty response)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * mask.long()).max(dim=1).values


def token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                  kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards, per-token KL estimate): the KL penalty everywhere, the score on the last token."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return rewards * mask, kl


def advantages_and_returns(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
                           lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages (whitened over the real tokens) and the value targets (raw advantages + values)."""
    values = values * mask
    last_gae = torch.zeros_like(rewards[:, 0])
    reversed_adv = []
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae * (mask[:, t + 1] if t + 1 < length else 0.0)
        reversed_adv.append(last_gae)
    advantages = torch.stack(reversed_adv[::-1], dim=1) * mask
    returns = advantages + values
    return masked_whiten(advantages, mask).detach() * mask, returns.detach()


@dataclass(frozen=True)
class PpoLoss:
    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor


def ppo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor,
             old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange: float = 0.2,
             cliprange_value: float = 0.2, vf_coef: float = 0.1) -> PpoLoss:
    """The clipped surrogate objective and the clipped value loss, averaged over real tokens."""
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cliprange, 1 + cliprange))
    policy_loss = masked_mean(surrogate, mask)
    clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    value_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)
    with torch.no_grad():
        clip_fraction = masked_mean(((ratio - 1).abs() > cliprange).float(), mask)
        approx_kl = 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
    return PpoLoss(policy_loss + vf_coef * value_loss, policy_loss, value_loss, clip_fraction, approx_kl)


class KLController:
    """The KL coefficient: fixed, or adaptive towards ``target`` (Ziegler et al., 2019, section 2.2)."""

    def __init__(self, init_coef: float, target: float | None, horizon: int = 10000) -> None:
        self.value, self.target, self.horizon = init_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        if self.target is None:
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


class RunningMoments:
    """Running mean and standard deviation of reward scores (``ppo_score_norm``), Chan et al.'s parallel update."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-24

    def normalise(self, scores: torch.Tensor) -> torch.Tensor:
        batch_mean, batch_var, n = scores.mean().item(), scores.var(unbiased=False).item(), scores.numel()
        delta, total = batch_mean - self.mean, self.count + n
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total
        return (scores - self.mean) / max(math.sqrt(self.var), 1e-8)
