"""Stage ``rm``: a reward model trained on preference pairs with TRL's RewardTrainer (Bradley-Terry loss,
``-log sigmoid(r_chosen - r_rejected)``).

The model is ``AutoModelForSequenceClassification`` with ``num_labels=1`` on the base checkpoint: a new linear
``score`` head reads the last hidden state of the last non-padding token. Rows are encoded with kubetune's
template (prompt + answer, the answer closed by the template's end of turn), the same text the scorer sees.

Output layout (what export, serving and PPO load; :func:`kubetune.train.reward.load_reward_model` reads both):

- lora/qlora: ``adapter_config.json`` (``task_type: SEQ_CLS``, ``base_model_name_or_path``) and
  ``adapter_model.safetensors`` holding the LoRA weights *and* the trained ``score`` head (a PEFT module to
  save). Load with ``AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)`` then
  ``PeftModel.from_pretrained(model, out)``; ``merge_and_unload()`` gives a plain reward model.
- full/freeze: ``config.json`` (``architectures: [*ForSequenceClassification]``, one label) and
  ``model.safetensors``: ``AutoModelForSequenceClassification.from_pretrained(out)``; vLLM serves it as a reward
  model.
- ``kubetune-config.yaml`` records the template the rewards assume; the manifest says ``stage: rm``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import AutoModelForSequenceClassification
from trl import RewardConfig, RewardTrainer

from kubetune.data.preference import reward_pair
from kubetune.train.checkpoints import AtomicCheckpointMixin
from kubetune.train.context import TrainContext, TrainResult
from kubetune.train.preference import encode_dataset, pair_kwargs
from kubetune.train.workflow import load_trainable, prepare_run, train_and_save

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig


class KubetuneRewardTrainer(AtomicCheckpointMixin, RewardTrainer):
    """RewardTrainer over rows kubetune already encoded (``chosen_ids``/``rejected_ids``)."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        return dataset


def run(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Train a reward model on ``cfg.data`` pairs (datasets with ``ranking: true``)."""
    run_ = prepare_run(cfg, RewardConfig, max_length=None, disable_dropout=True)
    kwargs = pair_kwargs(cfg, run_.tokenizer)
    train = encode_dataset(run_.bundle.train, reward_pair, cfg, run_.tokenizer, **kwargs)
    evals = encode_dataset(run_.bundle.eval, reward_pair, cfg, run_.tokenizer, **kwargs)
    model = load_trainable(cfg, run_, task="seq_cls", auto_class=AutoModelForSequenceClassification, num_labels=1)
    trainer = KubetuneRewardTrainer(model=model, args=run_.args, train_dataset=train, eval_dataset=evals,
                                    processing_class=run_.tokenizer)
    return train_and_save(trainer, cfg, ctx, run_, len(train))
