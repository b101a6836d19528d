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
from kubetune.train.causal_loss import BODY_INPUTS, HeadParts, labelled_loss, plain_head_parts
from kubetune.train.checkpoints import AtomicCheckpointMixin
from kubetune.train.optimizers import badam_optimizer, scale_front
from kubetune.train.progress import ProgressReporter, ProgressSink


class KubetuneTrainer(AtomicCheckpointMixin, Trainer):
    """transformers Trainer with complete-or-ignored checkpoints, optional LoRA+ parameter groups and BAdam, and the
    training loss computed on labelled positions only where the model allows it (:meth:`compute_loss`).

    Args:
        loraplus: the method config when ``loraplus_lr_ratio`` is set (B matrices learn faster), else None.
        optimizer_keys: the optimizer config (use_badam builds BAdam's block optimizer; apollo_scale_front).
        Everything else is passed to ``Trainer``.
    """

    def __init__(self, *args: Any, loraplus: Any = None, optimizer_keys: OptimizerConfig | None = None,
                 **kwargs: Any) -> None:
        self._loraplus = loraplus
        self._optimizer_keys = optimizer_keys
        self._flops_params: tuple[Any, int] | None = None  # (model, parameters without embeddings)
        super().__init__(*args, **kwargs)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """``Trainer.floating_point_ops`` (6 x input tokens x non-embedding parameters, for ``total_flos``) with
        the parameter count taken once per model: the stock method walks every module on every step."""
        model: Any = self.model
        main_input = getattr(model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(model, "num_parameters"):
            return 0
        if self._flops_params is None or self._flops_params[0] is not model:
            self._flops_params = (model, model.num_parameters(exclude_embeddings=True))
        return 6 * inputs[main_input].numel() * self._flops_params[1]

    def labelled_loss_parts(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> HeadParts | None:
        """The body and head to compute this batch's loss from labelled positions, or None for the stock path.

        The stock path stays for outputs that are wanted (evaluation logits), label smoothing or a custom loss
        function, Liger kernels, a model wrapped for distribution (DDP/FSDP/DeepSpeed run the forward through
        their wrapper), batches with inputs other than tokens and positions, and models whose forward does more
        than body → head → loss (:func:`kubetune.train.causal_loss.plain_head_parts`).
        """
        if (return_outputs or "labels" not in inputs or self.label_smoother is not None
                or self.compute_loss_func is not None or self.args.use_liger_kernel
                or self.accelerator.num_processes > 1 or self.args.n_gpu > 1
                or self.accelerator.unwrap_model(model) is not model
                or not set(inputs) <= BODY_INPUTS | {"labels", "shift_labels"}):
            return None
        return plain_head_parts(model)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """``Trainer.compute_loss``, with the LM head and cross-entropy run only on positions that have a label.

        Same value and gradients as the stock forward (tests/unit/test_causal_loss.py), including the division by
        ``num_items_in_batch`` (counted over the whole accumulated batch) when the model takes loss kwargs, and
        the per-batch mean otherwise (the Trainer then divides by the accumulation steps).
        """
        parts = self.labelled_loss_parts(model, inputs, return_outputs)
        if parts is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        with self.accelerator.autocast():  # the stock forward runs under accelerate's autocast wrapper
            return labelled_loss(parts, inputs, items)

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
