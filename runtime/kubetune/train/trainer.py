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

from kubetune.config.optimizer_args import OptimizerConfig
from kubetune.model.adapters import loraplus_optimizer
from kubetune.train.callbacks import ConsoleProgressCallback, TrainerLogCallback
from kubetune.train.checkpoints import AtomicCheckpointMixin
from kubetune.train.optimizers import badam_optimizer, scale_front
from kubetune.train.progress import ProgressReporter, ProgressSink


class KubetuneTrainer(AtomicCheckpointMixin, Trainer):
    """transformers Trainer with complete-or-ignored checkpoints, optional LoRA+ parameter groups and BAdam.

    Args:
        loraplus: the method config when ``loraplus_lr_ratio`` is set (B matrices learn faster), else None.
        optimizer_keys: the optimizer config (use_badam builds BAdam's block optimizer; apollo_scale_front).
        Everything else is passed to ``Trainer``.
    """

    def __init__(self, *args: Any, loraplus: Any = None, optimizer_keys: OptimizerConfig | None = None,
                 **kwargs: Any) -> None:
        self._loraplus = loraplus
        self._optimizer_keys = optimizer_keys
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: Any = None) -> Any:
        keys = self._optimizer_keys
        if self.optimizer is not None:
            return self.optimizer
        target = self.model if model is None else model
        assert target is not None, "the Trainer was built with a model"
        if self._loraplus is not None or (keys is not None and keys.use_badam):
            optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(
                self.args, self.model)  # type: ignore[arg-type]  # annotated PreTrainedModel; any Module works
            if self._loraplus is not None:
                self.optimizer = loraplus_optimizer(target, optimizer_cls, optimizer_kwargs, self._loraplus,
                                                    self.args.weight_decay)
            else:
                assert keys is not None
                self.optimizer = badam_optimizer(target, keys, optimizer_cls, optimizer_kwargs,
                                                 self.args.weight_decay)
            return self.optimizer
        optimizer = super().create_optimizer(model)
        if keys is not None and keys.use_apollo and keys.apollo_scale_front:
            scale_front(optimizer)
        return optimizer


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
