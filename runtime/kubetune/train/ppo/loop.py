"""The PPO loop: rollout → score → advantages → ``ppo_epochs`` passes of clipped updates, one optimizer schedule.

One PPO step consumes ``per_device_train_batch_size x gradient_accumulation_steps x ppo_buffer_size`` prompts
(LLaMA-Factory's batch arithmetic): the rollout is split into mini-batches of ``per_device_train_batch_size``,
and the optimizer steps every ``gradient_accumulation_steps`` mini-batches, for ``ppo_epochs`` passes. The
learning-rate schedule and ``global_step`` advance once per PPO step. Prompts are read in a fixed, seeded order
(a fresh permutation per epoch), so a resumed run continues with the prompts it had not seen.

A transformers Trainer (:class:`PpoShell`) is kept as the shell: it owns the arguments, the state, the callbacks
(trainer_log.jsonl, progress, console bar) and checkpoint/artifact saving, so PPO writes the same outputs as
every other stage. Its checkpoints add ``value_head.safetensors`` and ``ppo_state.json`` (KL coefficient and
score statistics) to the usual optimizer files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kubetune.train.ppo.algorithm import (
    KLController,
    RunningMoments,
    advantages_and_returns,
    masked_mean,
    masked_whiten,
    ppo_loss,
    token_rewards,
)
from kubetune.train.ppo.rollout import VALUE_HEAD_NAME, Rollout, ValueHead, forward, sample
from kubetune.train.reward import RewardScorer
from kubetune.train.trainer import KubetuneTrainer

PPO_STATE_NAME = "ppo_state.json"


@dataclass
class PpoSettings:
    """What the loop needs from the config, resolved once."""

    rollout_batch: int
    mini_batch: int
    grad_accum: int
    ppo_epochs: int
    whiten_rewards: bool
    score_norm: bool
    temperature: float
    generation: dict[str, Any]
    stop_ids: list[int]
    pad_id: int
    max_prompt_len: int
    max_grad_norm: float


@dataclass
class PpoState:
    """What a checkpoint must carry beyond weights and optimizer: the KL coefficient and score statistics."""

    kl: KLController
    moments: RunningMoments = field(default_factory=RunningMoments)

    def to_json(self) -> str:
        return json.dumps({"kl_coef": self.kl.value, "score_mean": self.moments.mean,
                           "score_var": self.moments.var, "score_count": self.moments.count})

    def load(self, path: Path) -> None:
        data = json.loads(path.read_text())
        self.kl.value = data["kl_coef"]
        self.moments.mean, self.moments.var, self.moments.count = (data["score_mean"], data["score_var"],
                                                                   data["score_count"])


class PpoShell(KubetuneTrainer):
    """The Trainer around the policy; saves the value head and PPO state with every checkpoint."""

    value_head: ValueHead
    ppo_state: PpoState

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            save_file(self.value_head.state_dict(), str(Path(output_dir) / VALUE_HEAD_NAME))
            (Path(output_dir) / PPO_STATE_NAME).write_text(self.ppo_state.to_json())

    def restore_ppo(self, checkpoint: Path) -> None:
        self.value_head.load_state_dict(load_file(str(checkpoint / VALUE_HEAD_NAME)))
        self.ppo_state.load(checkpoint / PPO_STATE_NAME)


def prompt_order(n_rows: int, seed: int) -> Iterator[int]:
    """Row indices, epoch after epoch, each epoch a permutation seeded by (seed, epoch)."""
    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(seed + epoch)
        yield from torch.randperm(n_rows, generator=generator).tolist()
        epoch += 1


def conversations(rows: list[dict[str, Any]], answers: list[str]) -> list[dict[str, Any]]:
    """The scored conversations: each prompt's messages plus the sampled answer."""
    return [{"messages": [*json.loads(r["messages"]), {"role": "assistant", "content": a}], "system": r["system"]}
            for r, a in zip(rows, answers, strict=True)]


def reference_context(policy: Any, ref_model: Any) -> tuple[Any, AbstractContextManager[Any]]:
    """The model computing reference log-probs, and the context to run it in (adapter off for LoRA)."""
    if ref_model is not None:
        return ref_model, nullcontext()
    return policy, policy.disable_adapter()


def update(shell: PpoShell, rollout: Rollout, old_logprobs: torch.Tensor, old_values: torch.Tensor,
           advantages: torch.Tensor, returns: torch.Tensor, s: PpoSettings) -> dict[str, float]:
    """``ppo_epochs`` passes of mini-batch updates over one rollout; returns the mean losses."""
    policy, optimizer = shell.model, shell.optimizer
    assert optimizer is not None, "the shell creates its optimizer before training"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sums: dict[str, float] = {"loss": 0.0, "policy_loss": 0.0, "value_loss": 0.0, "clip_fraction": 0.0}
    count = 0
    for _ in range(s.ppo_epochs):
        order = torch.randperm(rollout.input_ids.shape[0])
        for k, start in enumerate(range(0, len(order), s.mini_batch)):
            rows = order[start:start + s.mini_batch].to(rollout.input_ids.device)
            logprobs, values = forward(policy, rollout, s.temperature, shell.value_head, rows)
            assert values is not None
            out = ppo_loss(logprobs, old_logprobs[rows], advantages[rows], values, old_values[rows], returns[rows],
                           rollout.response_mask[rows])
            (out.loss / s.grad_accum).backward()
            if (k + 1) % s.grad_accum == 0 or start + s.mini_batch >= len(order):
                if s.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for key in sums:
                sums[key] += float(getattr(out, key).detach())
            count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


def ppo_step(shell: PpoShell, ref_model: Any, scorer: RewardScorer, rows: list[dict[str, Any]], tokenizer: Any,
             s: PpoSettings) -> dict[str, float]:
    """One PPO step on ``rows`` (encoded prompts); returns the metrics to log."""
    policy, value_head, state = shell.model, shell.value_head, shell.ppo_state
    rollout = sample(policy, [r["prompt_ids"] for r in rows], s.pad_id, s.stop_ids, s.generation)
    answers = tokenizer.batch_decode(rollout.responses, skip_special_tokens=True)
    raw = torch.tensor(scorer.score(conversations(rows, [a.strip() for a in answers])), dtype=torch.float32)
    scores = (state.moments.normalise(raw) if s.score_norm else raw).to(rollout.input_ids.device)
    mask = rollout.response_mask
    with torch.no_grad():
        old_logprobs, old_values = forward(policy, rollout, s.temperature, value_head)
        ref, context = reference_context(policy, ref_model)
        with context:
            ref_logprobs, _ = forward(ref, rollout, s.temperature)
    assert old_values is not None
    rewards, kl = token_rewards(scores, old_logprobs, ref_logprobs, mask, state.kl.value)
    if s.whiten_rewards:
        rewards = masked_whiten(rewards, mask, shift_mean=False)
    advantages, returns = advantages_and_returns(rewards, old_values, mask)
    losses = update(shell, rollout, old_logprobs, old_values, advantages, returns, s)
    mean_kl = float(kl.sum(dim=1).mean())
    metrics = {**losses, "reward": float(raw.mean()), "kl": mean_kl, "kl_coef": state.kl.value,
               "response_len": float(mask.sum(dim=1).float().mean()),
               "value_mean": float(masked_mean(old_values, mask))}
    state.kl.update(mean_kl, len(rows))
    return metrics


def total_steps(args: Any, n_rows: int, rollout_batch: int) -> int:
    """PPO steps of the run: ``max_steps`` when set, else epochs over the prompts."""
    if args.max_steps > 0:
        return int(args.max_steps)
    return max(1, math.ceil(args.num_train_epochs * n_rows / rollout_batch))


def train_loop(shell: PpoShell, ref_model: Any, scorer: RewardScorer, prompts: Any, tokenizer: Any,
               s: PpoSettings) -> dict[str, float]:
    """Run PPO steps from ``shell.state.global_step`` to ``shell.state.max_steps`` with logging and checkpoints."""
    args, state, control = shell.args, shell.state, shell.control
    order = prompt_order(len(prompts), args.seed)
    for _ in range(state.global_step * s.rollout_batch):  # skip what a resumed run already consumed
        next(order)
    shell.callback_handler.on_train_begin(args, state, control)
    scheduler = shell.lr_scheduler
    assert scheduler is not None, "the shell creates its scheduler before training"
    window: list[dict[str, float]] = []
    while state.global_step < state.max_steps:
        rows = [prompts[next(order)] for _ in range(s.rollout_batch)]
        window.append(ppo_step(shell, ref_model, scorer, rows, tokenizer, s))
        scheduler.step()
        state.global_step += 1
        state.epoch = state.global_step * s.rollout_batch / len(prompts)
        shell.callback_handler.on_step_end(args, state, control)
        if state.global_step % state.logging_steps == 0 or state.global_step == state.max_steps:
            logs = {k: sum(m[k] for m in window) / len(window) for k in window[0]}
            shell.log({**logs, "learning_rate": float(scheduler.get_last_lr()[0])})
            window.clear()
        if args.save_strategy == "steps" and state.global_step % state.save_steps == 0:
            shell._save_checkpoint(shell.model, trial=None)
            shell.callback_handler.on_save(args, state, control)
    shell.callback_handler.on_train_end(args, state, control)
    history = [r for r in state.log_history if "loss" in r]
    return {"train_loss": sum(r["loss"] for r in history) / max(len(history), 1),
            "reward": history[-1]["reward"] if history else 0.0}
