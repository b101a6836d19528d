"""Stage ``dpo``: direct preference optimisation and its reference-free relatives, chosen by ``pref_loss``.

=========  ==========================================================  ===================================
pref_loss  loss (β = pref_beta)                                        TRL 1.16 trainer
=========  ==========================================================  ===================================
sigmoid    DPO, -log σ(β·Δ) (Rafailov et al., 2023)                     DPOTrainer ``sigmoid``
hinge      SLiC hinge, max(0, 1 - β·Δ) (Zhao et al., 2023)              DPOTrainer ``hinge``
ipo        IPO, (Δ̄ - 1/(2β))² on per-token averages (Azar et al.)       DPOTrainer ``ipo``
orpo       NLL(chosen) - β·log σ(log-odds ratio) (Hong et al., 2024)     ORPOTrainer (trl.experimental)
simpo      -log σ(β·(avg logp_c - avg logp_r) - γ) (Meng et al., 2024)  CPOTrainer ``simpo`` (experimental)
=========  ==========================================================  ===================================

Δ = (log π(y_c) - log π_ref(y_c)) - (log π(y_r) - log π_ref(y_r)), log-probabilities summed over the answer.
``pref_ftx`` adds that weight times the SFT loss on the chosen answers (TRL's ``sft`` loss, CPO's ``cpo_alpha``;
for orpo it scales the NLL term ORPO already has by 1 + pref_ftx). ``dpo_label_smoothing`` ε switches sigmoid to
TRL's robust DPO, [(1-ε)·L(Δ) - ε·L(-Δ)]/(1-2ε) (Chowdhury et al., 2024); TRL 1.16 no longer has the
conservative cDPO mixture LLaMA-Factory uses, so the two differ. SimPO applies ε as cDPO does.

Reference model: ``ref_model`` when set; otherwise the policy with its LoRA adapter off (no second copy), or a
frozen copy of the base for full/freeze training. orpo and simpo use none. The reference is frozen, so when a run
trains on every pair at least twice its log-probabilities are computed once, before the first step, in one no-grad
pass over the data (TRL's ``precompute_ref_log_probs``), instead of one reference forward per pair per step. A
shorter run keeps the per-step forward: the up-front pass has its own costs (hashing the model, caching the
results with the dataset), and on a tiny model at one epoch it cost more than the forwards it replaced. Logged per step:
rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies (β-scaled implicit rewards), logps/*, the loss.

sigmoid, hinge, ipo, robust and the SFT term run through :mod:`kubetune.train.dpo_step`: TRL's losses on log-probs
scored at the answer positions only, without TRL's entropy, logits/* and mean_token_accuracy metrics.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from trl import DPOConfig, DPOTrainer

from kubetune.data.preference import encode_pair
from kubetune.train.checkpoints import AtomicCheckpointMixin
from kubetune.train.context import TrainContext, TrainResult
from kubetune.train.dpo_step import LeanDPOStep
from kubetune.train.preference import SavesTrainedAdapterOnly, encode_dataset, load_reference, pair_kwargs
from kubetune.train.workflow import load_trainable, prepare_run, train_and_save

if TYPE_CHECKING:
    from kubetune.config import PreferenceConfig, RuntimeConfig


class KubetuneDPOTrainer(SavesTrainedAdapterOnly, AtomicCheckpointMixin, LeanDPOStep, DPOTrainer):
    """DPOTrainer over rows kubetune already encoded (``prompt_ids``/``chosen_ids``/``rejected_ids``), with the
    lean step of :mod:`kubetune.train.dpo_step`."""

    reference_seconds = 0.0  # time spent computing the reference log-probs once (0 when computed per step)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        return dataset

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        started = time.monotonic()
        try:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        finally:
            self.reference_seconds += time.monotonic() - started


PASSES_FOR_REFERENCE_ONCE = 2


def reference_once(args: Any, pairs: int) -> bool:
    """Whether to compute the reference log-probs once up front: the run trains on every pair at least
    :data:`PASSES_FOR_REFERENCE_ONCE` times, so one pass replaces at least that many reference forwards per pair."""
    if args.max_steps <= 0:
        return bool(args.num_train_epochs >= PASSES_FOR_REFERENCE_ONCE)
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    return bool(args.max_steps * per_step >= PASSES_FOR_REFERENCE_ONCE * pairs)


def dpo_losses(pref: PreferenceConfig) -> dict[str, Any]:
    """DPOConfig fields for sigmoid, hinge and ipo (plus the SFT term and label smoothing)."""
    loss = "robust" if pref.pref_loss == "sigmoid" and pref.dpo_label_smoothing else pref.pref_loss
    types: list[str] = [loss]
    weights = [1.0]
    if pref.pref_ftx:
        types.append("sft")
        weights.append(pref.pref_ftx)
    return {"loss_type": types, "loss_weights": weights, "beta": pref.pref_beta,
            "label_smoothing": pref.dpo_label_smoothing, "ld_alpha": pref.ld_alpha}


def run(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Train on ``cfg.data`` pairs with the configured ``pref_loss``."""
    if cfg.preference.pref_loss in ("orpo", "simpo"):
        from kubetune.train.dpo_reference_free import run as run_reference_free

        return run_reference_free(cfg, ctx)
    run_ = prepare_run(cfg, DPOConfig, max_length=None, disable_dropout=True, **dpo_losses(cfg.preference))
    kwargs = pair_kwargs(cfg, run_.tokenizer)
    train = encode_dataset(run_.bundle.train, encode_pair, cfg, run_.tokenizer, **kwargs)
    evals = encode_dataset(run_.bundle.eval, encode_pair, cfg, run_.tokenizer, **kwargs)
    model = load_trainable(cfg, run_)
    run_.args.precompute_ref_log_probs = reference_once(run_.args, len(train))
    trainer = KubetuneDPOTrainer(model=model, ref_model=load_reference(cfg, run_), args=run_.args,
                                 train_dataset=train, eval_dataset=evals, processing_class=run_.tokenizer)
    if run_.args.precompute_ref_log_probs and trainer.is_world_process_zero():
        ctx.say(f"reference log-probs of {len(train):,} pairs computed once in {trainer.reference_seconds:.1f}s")
    return train_and_save(trainer, cfg, ctx, run_, len(train))
