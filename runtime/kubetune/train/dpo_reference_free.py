"""``pref_loss: orpo`` and ``pref_loss: simpo`` of stage dpo: preference losses without a reference model, on
TRL 1.16's experimental ORPOTrainer and CPOTrainer (SimPO is CPO with ``loss_type="simpo"``).

Both trainers tokenize strings themselves; kubetune hands them rows already encoded with its template and turns
each into the columns their collator pads (:func:`kubetune.data.preference.pair_columns`). See
:mod:`kubetune.train.dpo` for the losses and how ``pref_ftx`` and ``dpo_label_smoothing`` apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from kubetune.data.preference import encode_pair, pair_columns
from kubetune.train.checkpoints import AtomicCheckpointMixin
from kubetune.train.context import TrainContext, TrainResult
from kubetune.train.preference import encode_dataset, pair_kwargs
from kubetune.train.workflow import load_trainable, prepare_run, train_and_save

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig


class _EncodedRows:
    """Replaces the trainers' string tokenization: rows arrive as kubetune-encoded ids."""

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, list[int]]:
        return pair_columns(feature)


class KubetuneCPOTrainer(AtomicCheckpointMixin, _EncodedRows, CPOTrainer):
    """CPOTrainer (SimPO loss) with kubetune encoding and atomic checkpoints."""


class KubetuneORPOTrainer(AtomicCheckpointMixin, _EncodedRows, ORPOTrainer):
    """ORPOTrainer with kubetune encoding, atomic checkpoints and ``pref_ftx`` on its NLL term."""

    def __init__(self, *args: Any, ftx: float = 0.0, **kwargs: Any) -> None:
        self.ftx = ftx
        super().__init__(*args, **kwargs)

    def concatenated_forward(self, model: Any, batch: dict[str, Any]) -> tuple[Any, ...]:
        # TRL annotates four items; it returns five (the chosen NLL) or six (with the router's aux loss)
        out: tuple[Any, ...] = super().concatenated_forward(model, batch)
        # ORPO's loss already holds NLL(chosen); LLaMA-Factory's pref_ftx adds that term once more per unit weight.
        return (*out[:4], out[4] * (1.0 + self.ftx), *out[5:])


def reference_free_kwargs(cfg: RuntimeConfig) -> dict[str, Any]:
    """ORPOConfig (orpo) or CPOConfig (simpo) fields from the preference keys."""
    pref = cfg.preference
    common = {"beta": pref.pref_beta, "max_length": cfg.data.cutoff_len, "disable_dropout": True}
    if pref.pref_loss == "orpo":
        return common
    return {"loss_type": "simpo", "simpo_gamma": pref.simpo_gamma, "cpo_alpha": pref.pref_ftx,
            "label_smoothing": pref.dpo_label_smoothing, **common}


def run(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Train with ORPO or SimPO (no reference model)."""
    pref = cfg.preference
    run_ = prepare_run(cfg, ORPOConfig if pref.pref_loss == "orpo" else CPOConfig, **reference_free_kwargs(cfg))
    kwargs = pair_kwargs(cfg, run_.tokenizer)
    train = encode_dataset(run_.bundle.train, encode_pair, cfg, run_.tokenizer, **kwargs)
    evals = encode_dataset(run_.bundle.eval, encode_pair, cfg, run_.tokenizer, **kwargs)
    model = load_trainable(cfg, run_)
    trainer_kwargs = {"model": model, "args": run_.args, "train_dataset": train, "eval_dataset": evals,
                      "processing_class": run_.tokenizer}
    if pref.pref_loss == "orpo":
        trainer: Any = KubetuneORPOTrainer(ftx=pref.pref_ftx, **trainer_kwargs)
    else:
        trainer = KubetuneCPOTrainer(**trainer_kwargs)
    return train_and_save(trainer, cfg, ctx, run_, len(train))
