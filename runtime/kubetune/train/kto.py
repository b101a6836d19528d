"""Stage ``kto``: Kahneman-Tversky optimisation (Ethayarajh et al., 2024) on unpaired answers marked desirable or
undesirable by the dataset's ``kto_tag`` column, with TRL 1.16's KTOTrainer.

Loss per example, with r = log π(y|x) - log π_ref(y|x) and z the batch estimate of KL(π || π_ref) from
mismatched prompt/answer pairs: desirable ``kto_chosen_weight · (1 - σ(β(r - z)))``, undesirable
``kto_rejected_weight · (1 - σ(β(z - r)))``, β = ``pref_beta``. ``pref_ftx`` adds that weight times the NLL of
the desirable answers (one extra forward pass over them). The reference model is chosen as for dpo.

The KL pairs are formed by rotating answers within each batch, so rows are shuffled once with the run's seed and
then read in order (TRL's sequential sampler). Logged: kl, rewards/chosen, rewards/rejected, rewards/margins,
logps/*, loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trl import KTOConfig, KTOTrainer

from kubetune.data.preference import encode_unpaired, with_kl_completions
from kubetune.train.checkpoints import AtomicCheckpointMixin
from kubetune.train.context import TrainContext, TrainResult
from kubetune.train.preference import (
    SavesTrainedAdapterOnly,
    check_kto_tags,
    encode_dataset,
    load_reference,
    pair_kwargs,
)
from kubetune.train.workflow import load_trainable, prepare_run, train_and_save

if TYPE_CHECKING:
    from kubetune.config import PreferenceConfig, RuntimeConfig


class KubetuneKTOTrainer(SavesTrainedAdapterOnly, AtomicCheckpointMixin, KTOTrainer):
    """KTOTrainer over kubetune-encoded rows, with atomic checkpoints and the optional SFT term."""

    def __init__(self, *args: Any, ftx: float = 0.0, **kwargs: Any) -> None:
        self.ftx = ftx
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        return dataset.map(with_kl_completions, batched=True, batch_size=args.per_device_train_batch_size,
                           desc="pairing KL answers")

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        desirable = inputs["label"].bool()
        if not self.ftx or not desirable.any():
            return result
        ids = inputs["input_ids"][desirable]
        labels = ids.masked_fill(inputs["completion_mask"][desirable] == 0, -100)
        nll = model(input_ids=ids, attention_mask=inputs["attention_mask"][desirable], labels=labels,
                    use_cache=False).loss
        self._metrics["train" if model.training else "eval"]["nll_loss"].append(nll.item())
        if return_outputs:
            return result[0] + self.ftx * nll, result[1]
        return result + self.ftx * nll


def kto_kwargs(pref: PreferenceConfig) -> dict[str, Any]:
    """KTOConfig fields from the preference keys (β, desirable and undesirable weights)."""
    return {"beta": pref.pref_beta, "desirable_weight": pref.kto_chosen_weight,
            "undesirable_weight": pref.kto_rejected_weight, "max_length": None, "disable_dropout": True}


def run(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Train on ``cfg.data`` rows with a boolean kto_tag column."""
    check_kto_tags(cfg)
    pref = cfg.preference
    run_ = prepare_run(cfg, KTOConfig, **kto_kwargs(pref))
    kwargs = pair_kwargs(cfg, run_.tokenizer)
    train = encode_dataset(run_.bundle.train, encode_unpaired, cfg, run_.tokenizer, **kwargs)
    train = train.shuffle(seed=cfg.training.seed).flatten_indices()
    evals = encode_dataset(run_.bundle.eval, encode_unpaired, cfg, run_.tokenizer, **kwargs)
    model = load_trainable(cfg, run_)
    trainer = KubetuneKTOTrainer(model=model, ref_model=load_reference(cfg, run_), args=run_.args,
                                 train_dataset=train, eval_dataset=evals, processing_class=run_.tokenizer,
                                 ftx=pref.pref_ftx)
    return train_and_save(trainer, cfg, ctx, run_, len(train))

