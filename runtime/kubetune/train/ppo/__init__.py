"""Stage ``ppo``: RLHF with proximal policy optimisation against a reward model, in kubetune's own small loop.

TRL 1.16 ships no PPO trainer (LLaMA-Factory's PPO needs trl <= 0.9.6), so kubetune implements the classic
recipe itself: :mod:`.algorithm` (the math, pure), :mod:`.rollout` (sampling, log-probs, the value head) and
:mod:`.loop` (the schedule, logging, checkpoints). The policy is the base model with the configured method
(LoRA, freeze or full); the value head is a linear layer on the policy's last hidden state; the reference policy
is the policy with its adapter switched off (LoRA), ``ref_model``, or a frozen copy of the base.

Rewards come from ``reward_model``: a kubetune rm output (a LoRA reward adapter on this run's base model, or a
full reward model) or, with ``reward_model_type: api``, an HTTP scorer (see :mod:`kubetune.train.reward`).
Keys: ``ppo_epochs``, ``ppo_buffer_size``, ``ppo_kl_coef`` (initial KL coefficient), ``ppo_target`` (adaptive
KL target; unset keeps the coefficient fixed), ``ppo_score_norm``, ``ppo_whiten_rewards``, and the generation
keys (``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``, ``do_sample``) for rollouts. Logged per step:
reward (mean raw score), kl (summed over the answer), kl_coef, policy_loss, value_loss, response_len, loss.

Runs in one process (one device); the artifact is the policy (adapter or model) only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerState

from kubetune.data.preference import encode_prompt
from kubetune.data.templates import resolve_template
from kubetune.model.loader import DTYPES
from kubetune.train.arguments import precision_of
from kubetune.train.context import TrainContext, TrainResult, last_logged_loss
from kubetune.train.outputs import artifact_type, save_final
from kubetune.train.ppo.algorithm import KLController
from kubetune.train.ppo.loop import PpoSettings, PpoShell, PpoState, total_steps, train_loop
from kubetune.train.ppo.rollout import ValueHead
from kubetune.train.preference import encode_dataset, load_reference
from kubetune.train.reward import HttpScorer, RewardScorer, is_adapter, model_scorer
from kubetune.train.stages import StageConfigError
from kubetune.train.trainer import install_callbacks, kubetune_callbacks
from kubetune.train.workflow import load_trainable, plan_text, prepare_run

if TYPE_CHECKING:
    from kubetune.config import PreferenceConfig, RuntimeConfig


def reward_source(reward_model_type: str, adapter: bool) -> str:
    """api, adapter (a kubetune rm adapter on the base model) or model (a full reward model).

    ``lora`` takes an adapter or, as kubetune's rm stage writes full models too, a model; ``full`` insists on a
    model. Raises StageConfigError when ``full`` names an adapter.
    """
    if reward_model_type == "api":
        return "api"
    if reward_model_type == "full" and adapter:
        raise StageConfigError("reward_model_type full: reward_model is a LoRA adapter; set reward_model_type lora "
                               "or point reward_model at a full reward model")
    return "adapter" if adapter else "model"


def make_scorer(cfg: RuntimeConfig, device: torch.device) -> RewardScorer:
    """The reward source named by ``reward_model``/``reward_model_type``."""
    pref = cfg.preference
    assert pref.reward_model is not None
    kind = reward_source(pref.reward_model_type, is_adapter(pref.reward_model))
    if kind == "api":
        return HttpScorer(pref.reward_model)
    base = cfg.model.model_name_or_path if kind == "adapter" else None
    scorer = model_scorer(pref.reward_model, base_model=base, template=cfg.data.template,
                          max_length=cfg.data.cutoff_len + cfg.generation.max_new_tokens,
                          dtype=DTYPES[precision_of(cfg.training)])
    scorer.model.to(device)
    return scorer


def settings(cfg: RuntimeConfig, args: Any, tokenizer: Any) -> PpoSettings:
    """PpoSettings from the config (batch arithmetic, sampling, stop tokens)."""
    gen, pref = cfg.generation, cfg.preference
    template = resolve_template(cfg.data.template, tokenizer)
    sampling = {"max_new_tokens": gen.max_new_tokens, "do_sample": gen.do_sample,
                "repetition_penalty": gen.repetition_penalty}
    if gen.do_sample:
        sampling |= {"temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return PpoSettings(
        rollout_batch=args.per_device_train_batch_size * args.gradient_accumulation_steps * pref.ppo_buffer_size,
        mini_batch=args.per_device_train_batch_size, grad_accum=args.gradient_accumulation_steps,
        ppo_epochs=pref.ppo_epochs, whiten_rewards=pref.ppo_whiten_rewards, score_norm=pref.ppo_score_norm,
        temperature=gen.temperature if gen.do_sample else 1.0, generation=sampling,
        stop_ids=template.stop_token_ids(tokenizer), pad_id=pad, max_prompt_len=cfg.data.cutoff_len,
        max_grad_norm=args.max_grad_norm)


def kl_controller(pref: PreferenceConfig) -> KLController:
    """The KL penalty: ``ppo_kl_coef`` to start with, adapted towards ``ppo_target`` when that is set."""
    return KLController(pref.ppo_kl_coef, pref.ppo_target)


def build_shell(cfg: RuntimeConfig, policy: Any, args: Any, tokenizer: Any, steps: int) -> PpoShell:
    """The Trainer shell with value head, optimizer over policy + value head, schedule and state."""
    shell = PpoShell(model=policy, args=args, processing_class=tokenizer)
    shell.value_head = ValueHead(policy.config.hidden_size).to(args.device)
    shell.ppo_state = PpoState(kl_controller(cfg.preference))
    trainable = [p for p in policy.parameters() if p.requires_grad] + list(shell.value_head.parameters())
    shell.optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    shell.create_scheduler(steps, shell.optimizer)
    shell.state.max_steps = steps
    shell.state.logging_steps = _every(args.logging_steps, steps)
    shell.state.save_steps = _every(args.save_steps, steps)
    return shell


def _every(value: float, steps: int) -> int:
    return max(1, math.ceil(value * steps)) if value < 1 else int(value)


def _disable_dropout(model: Any) -> None:
    # Old and new log-probs of the same rollout must agree before the first update.
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def run(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Optimise the policy on the prompts of ``cfg.data`` against ``reward_model``."""
    run_ = prepare_run(cfg)
    args, tokenizer = run_.args, run_.tokenizer
    if args.world_size > 1:
        raise StageConfigError("stage ppo runs in one process; launch it with one process per job "
                               "(nproc-per-node 1)")
    prompts = encode_dataset(run_.bundle.train, encode_prompt, cfg, tokenizer, max_prompt_len=cfg.data.cutoff_len)
    policy = load_trainable(cfg, run_)
    _disable_dropout(policy)
    s = settings(cfg, args, tokenizer)
    shell = build_shell(cfg, policy, args, tokenizer, total_steps(args, len(prompts), s.rollout_batch))
    ref = load_reference(cfg, run_)
    if ref is not None:
        ref.to(args.device)
    scorer = make_scorer(cfg, args.device)
    if run_.resume is not None:
        steps = shell.state.max_steps
        shell._load_from_checkpoint(str(run_.resume))
        shell._load_optimizer_and_scheduler(str(run_.resume))
        shell.restore_ppo(run_.resume)
        shell.state = TrainerState.load_from_json(str(run_.resume / "trainer_state.json"))
        shell.state.max_steps = steps
    install_callbacks(shell, kubetune_callbacks(run_.output_dir, ctx.sinks, cfg.run.progress_interval_s,
                                                ctx.console and not args.disable_tqdm))
    ctx.say(plan_text(cfg, shell, shell.state.max_steps, len(prompts), run_.resume))
    metrics = train_loop(shell, ref, scorer, prompts, tokenizer, s)
    save_final(shell, cfg, run_.output_dir, metrics)
    return TrainResult(output_dir=run_.output_dir, artifact_type=artifact_type(cfg.method.finetuning_type),
                       global_step=shell.state.global_step, train_loss=metrics.get("train_loss"),
                       last_loss=last_logged_loss(shell.state.log_history), resumed_from=run_.resume,
                       metrics=metrics)
