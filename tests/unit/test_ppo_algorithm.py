"""PPO math on literal tensors: rewards, GAE, the clipped losses, the KL controller, rollout masks."""

from __future__ import annotations

import pytest
import torch

from kubetune.train.ppo.algorithm import (
    KLController,
    RunningMoments,
    advantages_and_returns,
    last_token_index,
    masked_whiten,
    ppo_loss,
    token_rewards,
)
from kubetune.train.ppo.loop import conversations, prompt_order
from kubetune.train.ppo.rollout import left_pad, response_mask


def test_score_lands_on_the_last_real_token_and_kl_everywhere():
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -9.0, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-1.0, -1.0, -1.0]])
    rewards, kl = token_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    assert last_token_index(mask).tolist() == [2, 0]
    assert kl.tolist() == [[0.5, 0.0, -0.5], [-1.0, 0.0, 0.0]]
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.0, 2.05], [-1.0 + 0.1, 0.0, 0.0]]))


def test_gae_matches_a_hand_computation():
    rewards = torch.tensor([[0.0, 1.0]])
    values = torch.tensor([[0.5, 0.25]])
    mask = torch.ones(1, 2)
    gamma, lam = 1.0, 0.5
    # delta_1 = 1 - 0.25 = 0.75; delta_0 = 0 + 0.25 - 0.5 = -0.25; A_0 = -0.25 + 0.5 * 0.75 = 0.125
    raw_adv = torch.tensor([[0.125, 0.75]])
    adv, returns = advantages_and_returns(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(returns, raw_adv + values)
    torch.testing.assert_close(adv, masked_whiten(raw_adv, mask))
    assert adv.mean().item() == pytest.approx(0.0, abs=1e-6)


def test_padding_after_the_answer_gets_no_advantage():
    rewards = torch.tensor([[0.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, returns = advantages_and_returns(rewards, torch.tensor([[0.1, 0.2, 0.3]]), mask)
    assert adv[0, 2] == 0.0 and returns[0, 1] == pytest.approx(1.0)


def test_policy_loss_is_clipped():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    values = torch.zeros(1, 2)
    adv = torch.tensor([[1.0, -1.0]])
    # ratio e^1 on a positive advantage is clipped at 1.2; ratio e^-1 on a negative advantage is clipped at 0.8.
    out = ppo_loss(torch.tensor([[1.0, -1.0]]), old, adv, values, values, values, mask)
    assert out.policy_loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert out.clip_fraction.item() == 1.0
    unclipped = ppo_loss(torch.tensor([[0.1, 0.0]]), old, adv, values, values, values, mask)
    assert unclipped.policy_loss.item() == pytest.approx((-torch.exp(torch.tensor(0.1)).item() + 1.0) / 2)


def test_value_loss_takes_the_worse_of_clipped_and_unclipped():
    mask = torch.ones(1, 1)
    zero = torch.zeros(1, 1)
    out = ppo_loss(zero, zero, zero, torch.tensor([[1.0]]), zero, torch.tensor([[1.0]]), mask, vf_coef=1.0)
    # unclipped error 0, clipped value 0.2 -> error 0.64: the larger one counts
    assert out.value_loss.item() == pytest.approx(0.5 * 0.64)


def test_kl_controller_adapts_only_with_a_target():
    fixed = KLController(0.1, None)
    fixed.update(100.0, 64)
    assert fixed.value == 0.1
    adaptive = KLController(0.1, target=1.0, horizon=100)
    adaptive.update(10.0, 10)  # far above target: +20% x 10/100
    assert adaptive.value == pytest.approx(0.1 * 1.02)
    adaptive.update(0.0, 10)
    assert adaptive.value == pytest.approx(0.1 * 1.02 * 0.98)


def test_running_moments_normalise_scores():
    moments = RunningMoments()
    out = moments.normalise(torch.tensor([1.0, 3.0]))
    assert out.tolist() == pytest.approx([-1.0, 1.0], abs=1e-4)
    moments.normalise(torch.tensor([5.0, 7.0]))
    assert moments.mean == pytest.approx(4.0) and moments.var == pytest.approx(5.0)


def test_response_mask_keeps_the_first_stop_token():
    responses = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]])
    assert response_mask(responses, [2]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_prompt_order_is_a_seeded_permutation_per_epoch():
    order = prompt_order(4, seed=3)
    first, second = [next(order) for _ in range(4)], [next(order) for _ in range(4)]
    assert sorted(first) == sorted(second) == [0, 1, 2, 3]
    again = prompt_order(4, seed=3)
    assert [next(again) for _ in range(8)] == first + second


def test_scored_conversation_appends_the_answer():
    rows = [{"messages": '[{"role": "user", "content": "Hi"}]', "system": "S"}]
    assert conversations(rows, ["Yo"]) == [{"messages": [{"role": "user", "content": "Hi"},
                                                         {"role": "assistant", "content": "Yo"}], "system": "S"}]
