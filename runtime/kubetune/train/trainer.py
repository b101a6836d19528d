"""The transformers Trainer kubetune trains with: atomic checkpoints, LoRA+ optimizer groups, kubetune callbacks.

The pt and sft stages use the plain transformers ``Trainer`` rather than TRL's ``SFTTrainer``: kubetune's data
layer already tokenizes, masks labels, packs and collates, and SFTTrainer would tokenize or pack a second time
(or need switches to skip exactly that). Stages that need TRL's losses (dpo, kto, ppo) mix
:class:`~kubetune.train.checkpoints.AtomicCheckpointMixin` and :func:`kubetune_callbacks` into TRL's trainers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from kubetune.model.adapters import loraplus_optimizer
from kubetune.train.callbacks import ConsoleProgressCallback, TrainerLogCallback
from kubetune.train.checkpoints import AtomicCheckpointMixin
from kubetune.train.progress import ProgressReporter, ProgressSink


class KubetuneTrainer(AtomicCheckpointMixin, Trainer):
    """transformers Trainer with complete-or-ignored checkpoints and optional LoRA+ parameter groups.

    Args:
        loraplus: the method config when ``loraplus_lr_ratio`` is set (B matrices learn faster), else None.
        Everything else is passed to ``Trainer``.
    """

    def __init__(self, *args: Any, loraplus: Any = None, **kwargs: Any) -> None:
        self._loraplus = loraplus
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: Any = None) -> Any:
        if self._loraplus is None or self.optimizer is not None:
            return super().create_optimizer(model)
        # transformers annotates this model as a PreTrainedModel; the Trainer holds any torch Module (a PeftModel)
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)  # type: ignore[arg-type]
        target = self.model if model is None else model
        assert target is not None, "the Trainer was built with a model"
        self.optimizer = loraplus_optimizer(target, optimizer_cls, optimizer_kwargs, self._loraplus,
                                            self.args.weight_decay)
        return self.optimizer


def kubetune_callbacks(output_dir: str | Path, sinks: Sequence[ProgressSink], interval_s: float,
                       console: bool) -> list[TrainerCallback]:
    """The trainer log, progress reporting and (when ``console``) the progress bar."""
    callbacks: list[TrainerCallback] = [TrainerLogCallback(output_dir),
                                        ProgressReporter(output_dir, sinks, interval_s)]
    if console:
        callbacks.append(ConsoleProgressCallback())
    return callbacks


def install_callbacks(trainer: Trainer, callbacks: Sequence[TrainerCallback]) -> None:
    """Add kubetune's callbacks in place of transformers' console output (a bar without the loss, or log dicts
    printed line by line): the metrics go to trainer_log.jsonl and, with the console on, into our bar."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    for callback in callbacks:
        trainer.add_callback(callback)
