"""A leaner DPO training step than TRL 1.16's, with the same losses, rewards and gradients.

TRL's ``DPOTrainer._compute_loss`` scores every position of the batch through its chunked LM head (on CPU it
scores prompt and padding positions too) and also computes entropy, the mean logit and top-1 hits per token, for
metrics it syncs to the host one by one. This step runs the backbone once over the concatenated chosen + rejected
batch (TRL's collator already concatenates them), projects only the hidden states of completion positions through the
LM head, and computes the reference the same way under ``torch.inference_mode`` (the policy with its adapter off, or
``ref_model``). The losses are TRL's own formulas for the types kubetune uses; the logged metrics are the ones users
read (rewards/*, logps/*, num_tokens), gathered in one host sync.

Anything else (other loss types, WPO weighting, f-divergences, MoE aux loss, vision inputs, a model whose forward is
more than body → head, see :func:`kubetune.train.causal_loss.plain_head_parts`, prompt-learning adapters,
``return_outputs``) goes through TRL's stock step unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import types
from typing import Any

import torch
import torch.nn.functional as F
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import use_adapter

from kubetune.train.causal_loss import plain_head_parts
from kubetune.train.lm_head import chunk_size, labelled_token_logps

LEAN_LOSS_TYPES = frozenset({"sigmoid", "robust", "hinge", "ipo", "sft"})
_MODEL_KEYS = ("input_ids", "attention_mask")


def add_completion_head(model: Any) -> None:
    """Patch ``model`` (a causal LM, before PEFT wrapping or its base model after) so that
    ``model(input_ids=..., attention_mask=..., completion_labels=labels)`` returns the log-probability of every
    next-token label that is not -100, as a flat tensor in row-major order, instead of logits.

    Only those positions go through the LM head, in chunks (:mod:`kubetune.train.lm_head`), so the
    ``(batch, seq, vocab)`` logits are never built. The call
    passes through PEFT and DDP wrappers like any forward, so LoRA layers and gradient synchronisation apply. Without
    ``completion_labels`` the forward is the previous one.
    """
    previous = model.forward

    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, completion_labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
        if completion_labels is None:
            return previous(*args, **kwargs)
        kwargs["use_cache"] = False
        kwargs.pop("labels", None)  # PEFT passes labels=None through
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        labels = completion_labels[:, 1:]
        mask = labels != -100
        head = self.get_output_embeddings()
        return labelled_token_logps(hidden[mask].to(head.weight.device), head, labels[mask],
                                    chunk_size(self.config.get_text_config().vocab_size))

    model.forward = types.MethodType(forward, model)


def lean_step_applies(trainer: Any) -> bool:
    """Whether this trainer's configuration is one the lean step computes exactly like TRL's."""
    return bool(set(trainer.loss_types) <= LEAN_LOSS_TYPES and not trainer.use_weighting
                and trainer.f_divergence_type == "reverse_kl" and not trainer.aux_loss_enabled
                and not getattr(trainer, "_is_vision_dataset", False)
                and plain_head_parts(trainer.accelerator.unwrap_model(trainer.model)) is not None)


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor, ld_alpha: float | None) -> torch.Tensor:
    """Per-sequence log-probabilities from per-token ones (``mask``-shaped, zero elsewhere): the sum, or with
    ``ld_alpha`` LD-DPO's shared-length sum plus ``ld_alpha`` times the tail beyond the shorter answer."""
    if ld_alpha is None:
        return token_logps.sum(dim=1)
    positions = mask.cumsum(dim=1)
    chosen_lens, rejected_lens = mask.sum(dim=1).long().chunk(2, dim=0)
    shared = torch.minimum(chosen_lens, rejected_lens).repeat(2).unsqueeze(1)
    shared_mask = (positions > 0) & (positions <= shared)
    tail_mask = positions > shared
    return (token_logps * shared_mask).sum(dim=1) + ld_alpha * (token_logps * tail_mask).sum(dim=1)


def preference_loss(trainer: Any, chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor,
                    token_logps: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """TRL 1.16's weighted sum of the configured losses (sigmoid, robust, hinge, ipo, sft), same formulas."""
    beta, eps = trainer.beta, trainer.label_smoothing
    delta = chosen_logratios - rejected_logratios
    loss = torch.zeros((), device=delta.device)
    for loss_type, weight in zip(trainer.loss_types, trainer.loss_weights, strict=True):
        if loss_type == "sigmoid":
            per_sequence = -F.logsigmoid(beta * delta)
        elif loss_type == "hinge":
            per_sequence = torch.relu(1 - beta * delta)
        elif loss_type == "ipo":
            chosen_mask, rejected_mask = completion_mask.chunk(2, dim=0)
            ipo_delta = (chosen_logratios / chosen_mask.sum(dim=1).clamp(min=1.0)
                         - rejected_logratios / rejected_mask.sum(dim=1).clamp(min=1.0))
            per_sequence = (ipo_delta - 1 / (2 * beta)) ** 2
        elif loss_type == "robust":
            per_sequence = (-(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1 - 2 * eps)
        else:  # sft: NLL of the chosen answers, averaged over their tokens
            chosen_tokens, _ = token_logps.chunk(2, dim=0)
            chosen_mask, _ = completion_mask[..., 1:].chunk(2, dim=0)
            per_sequence = -chosen_tokens[chosen_mask.bool()].mean().expand(chosen_tokens.size(0))
        loss = loss + per_sequence.mean() * weight
    return loss


class LeanDPOStep:
    """Mixin for TRL's DPOTrainer: the lean step when :func:`lean_step_applies`, TRL's stock step otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lean_step = lean_step_applies(self)
        if self.lean_step:
            model = self.accelerator.unwrap_model(self.model)  # type: ignore[attr-defined]
            add_completion_head(model.get_base_model() if hasattr(model, "get_base_model") else model)
            if self.ref_model is not None:  # type: ignore[attr-defined]
                add_completion_head(self.ref_model)  # type: ignore[attr-defined]

    def _completion_logps(self, model: Any, inputs: dict[str, Any], labels: torch.Tensor) -> torch.Tensor:
        """Per-token log-probs of the completion labels, ``(batch, seq - 1)``, zero elsewhere."""
        flat = model(**{key: inputs[key] for key in _MODEL_KEYS if key in inputs}, completion_labels=labels)
        mask = labels[:, 1:] != -100
        return flat.new_zeros(mask.shape).masked_scatter(mask, flat)

    def _reference_logps(self, inputs: dict[str, Any], labels: torch.Tensor,
                         mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trainer: Any = self
        if trainer.precompute_ref_logps:
            return inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        model = trainer.ref_model
        adapter: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if model is None:
            model = trainer.model
            unwrapped = trainer.accelerator.unwrap_model(model)
            if hasattr(unwrapped, "peft_config"):
                adapter = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        # autocast as TRL's reference pass: the head bypasses the wrapper accelerate puts on a prepared ref_model
        with (torch.inference_mode(), adapter, trainer.accelerator.autocast(),
              disable_gradient_checkpointing(trainer.model, trainer.args.gradient_checkpointing_kwargs)):
            logps = sequence_logps(self._completion_logps(model, inputs, labels), mask, trainer.ld_alpha)
        chosen, rejected = logps.clone().chunk(2, dim=0)  # clone: a normal tensor, usable in autograd
        return chosen, rejected

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        trainer: Any = self
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        if return_outputs or not self.lean_step:
            return super()._compute_loss(model, inputs, return_outputs)  # type: ignore[misc]
        mask = completion_mask[..., 1:]
        token_logps = self._completion_logps(model, inputs, labels)
        chosen_logps, rejected_logps = sequence_logps(token_logps, mask, trainer.ld_alpha).chunk(2, dim=0)
        ref_chosen, ref_rejected = self._reference_logps(inputs, labels, mask)
        chosen_logratios, rejected_logratios = chosen_logps - ref_chosen, rejected_logps - ref_rejected
        loss = preference_loss(trainer, chosen_logratios, rejected_logratios, token_logps, completion_mask)
        self._record_metrics(inputs, chosen_logratios.detach(), rejected_logratios.detach(),
                             chosen_logps.detach(), rejected_logps.detach())
        return loss

    def _record_metrics(self, inputs: dict[str, Any], chosen_logratios: torch.Tensor,
                        rejected_logratios: torch.Tensor, chosen_logps: torch.Tensor,
                        rejected_logps: torch.Tensor) -> None:
        """TRL's rewards/*, logps/* and num_tokens for this batch, gathered across ranks in one host sync."""
        trainer: Any = self
        mode = "train" if trainer.model.training else "eval"
        chosen_rewards, rejected_rewards = trainer.beta * chosen_logratios, trainer.beta * rejected_logratios
        per_pair = torch.stack([chosen_rewards, rejected_rewards, (chosen_rewards > rejected_rewards).float(),
                                chosen_rewards - rejected_rewards, chosen_logps, rejected_logps], dim=1)
        tokens = inputs["attention_mask"].sum().to(per_pair.dtype).expand(per_pair.size(0), 1) / per_pair.size(0)
        gathered = trainer.accelerator.gather(torch.cat([per_pair, tokens], dim=1))
        *means, total_tokens = torch.cat([gathered[:, :-1].mean(dim=0), gathered[:, -1:].sum(dim=0)]).tolist()
        metrics = trainer._metrics[mode]
        for key, value in zip(("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                               "logps/chosen", "logps/rejected"), means, strict=True):
            metrics[key].append(value)
        if mode == "train":
            trainer._total_train_tokens += round(total_tokens) // trainer._tp_size
        metrics["num_tokens"] = [trainer._total_train_tokens]
