"""Optimisation keys (a typed subset of transformers.TrainingArguments plus any other of its keys) and the
distributed strategy (DDP, FSDP or DeepSpeed)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from kubetune.config.base import ConfigGroup
from kubetune.config.hf_keys import HF_TRAINING_KEYS

# Keys of TrainingConfig that transformers does not know: kubetune/LLaMA-Factory additions handled by the runtime.
NON_HF_TRAINING_KEYS = frozenset({"overwrite_output_dir", "plot_loss", "precision", "warmup_ratio",
                                  "predict_with_generate"})
DEEPSPEED_PRESETS = ("ds_z0", "ds_z2", "ds_z2_offload", "ds_z3", "ds_z3_offload")
_PRESET = re.compile(r"^ds_z([023])(_offload)?$")


class TrainingConfig(ConfigGroup):
    """transformers.TrainingArguments keys with their names and defaults, plus a few runtime additions.

    Keys not declared here are accepted when transformers.TrainingArguments has them (kept in ``model_extra``).
    Differences from transformers: ``gradient_checkpointing`` defaults to true (as in LLaMA-Factory),
    ``warmup_ratio`` is accepted (transformers 5 folds it into a fractional ``warmup_steps``), and
    ``precision: auto`` lets the runtime pick bf16 where the accelerator supports it.
    """

    model_config = ConfigDict(extra="allow")

    output_dir: str = Field(min_length=1, description="Where checkpoints and the final artifact are written.")
    overwrite_output_dir: bool = Field(False, description="Start over even if output_dir holds checkpoints.")
    num_train_epochs: float = Field(3.0, gt=0.0, description="Passes over the training data.")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimizer steps (-1: use epochs).")
    per_device_train_batch_size: int = Field(8, ge=1, description="Sequences per device per micro-step.")
    per_device_eval_batch_size: int = Field(8, ge=1, description="Sequences per device when evaluating.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-steps per optimizer step.")
    learning_rate: float = Field(5e-5, gt=0.0, description="Peak learning rate.")
    lr_scheduler_type: str = Field("linear", description="Learning-rate schedule (transformers SchedulerType).")
    lr_scheduler_kwargs: dict[str, Any] | None = Field(None, description="Extra scheduler arguments.")
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of steps spent warming up.")
    warmup_steps: float = Field(0, ge=0, description="Warm-up steps (or a fraction when < 1).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Gradient clipping norm (0 disables).")
    optim: str = Field("adamw_torch_fused", description="Optimizer name as transformers knows it.")
    logging_steps: float = Field(500, gt=0, description="Log every n steps (or a fraction of all steps when < 1).")
    save_strategy: Literal["no", "steps", "epoch", "best"] = Field("steps", description="When to checkpoint.")
    save_steps: float = Field(500, gt=0, description="Checkpoint every n steps (or a fraction when < 1).")
    save_total_limit: int | None = Field(None, ge=1, description="Keep at most n checkpoints.")
    save_only_model: bool = Field(False, description="Checkpoints without optimizer state (cannot resume).")
    eval_strategy: Literal["no", "steps", "epoch"] = Field("no", description="When to evaluate.")
    eval_steps: float | None = Field(None, gt=0, description="Evaluate every n steps (eval_strategy steps).")
    seed: int = Field(42, ge=0, description="Random seed.")
    bf16: bool = Field(False, description="bfloat16 mixed precision.")
    fp16: bool = Field(False, description="float16 mixed precision.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] | None = Field(
        None, description="kubetune: auto picks bf16 where supported; unset follows bf16/fp16 (else fp32)."
    )
    predict_with_generate: bool = Field(
        False, description="With do_predict (sft): after training, generate an answer for every evaluation example "
        "and write generated_predictions.jsonl and BLEU-4 / ROUGE scores (predict_results.json).")
    gradient_checkpointing: bool = Field(True, description="Recompute activations to save memory.")
    report_to: str | list[str] = Field("none", description="Experiment trackers (none, tensorboard, wandb, ...).")
    resume_from_checkpoint: str | None = Field(None, description="Checkpoint directory to resume from.")
    dataloader_num_workers: int = Field(0, ge=0, description="Data-loading worker processes.")
    ddp_timeout: int = Field(1800, ge=1, description="Collective timeout in seconds.")
    plot_loss: bool = Field(True, description="Save the loss curve (training_loss.png) with the output; kubetune "
                            "draws it unless false.")

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        unknown = sorted(set(self.model_extra or {}) - HF_TRAINING_KEYS)
        if unknown:
            raise ValueError(f"unknown training keys: {', '.join(unknown)}")
        if self.bf16 and self.fp16:
            raise ValueError("bf16 and fp16 cannot both be true")
        flags: Literal["bf16", "fp16"] | None = "bf16" if self.bf16 else "fp16" if self.fp16 else None
        if self.precision is None:
            self.precision = flags or "fp32"
        elif flags and self.precision != flags:
            raise ValueError(f"precision {self.precision} contradicts {flags}: true")
        elif self.precision in ("bf16", "fp16"):
            setattr(self, self.precision, True)
        if self.eval_strategy == "steps" and self.eval_steps is None:
            self.eval_steps = self.logging_steps
        return self

    def hf_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for transformers.TrainingArguments (runtime-only keys left out)."""
        out = {k: v for k, v in self.model_dump().items() if k not in NON_HF_TRAINING_KEYS}
        if self.warmup_ratio and not self.warmup_steps:
            out["warmup_steps"] = self.warmup_ratio
        return out


class DistributedConfig(ConfigGroup):
    """How processes share the work. ``deepspeed`` is a JSON path, an inline dict or a preset name
    (ds_z0, ds_z2, ds_z2_offload, ds_z3, ds_z3_offload); ``strategy`` is inferred when unset."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] | None = Field(None, description="ddp, fsdp or deepspeed.")
    deepspeed: str | dict[str, Any] | None = Field(None, description="DeepSpeed config: path, dict or preset.")
    fsdp: str | list[str] | None = Field(None, description="transformers fsdp option, e.g. 'full_shard auto_wrap'.")
    fsdp_config: str | dict[str, Any] | None = Field(None, description="transformers fsdp_config (path or dict).")

    @model_validator(mode="after")
    def _consistent(self) -> DistributedConfig:
        if self.deepspeed and self.fsdp:
            raise ValueError("set either deepspeed or fsdp, not both")
        implied: Literal["deepspeed", "fsdp"] | None = "deepspeed" if self.deepspeed else "fsdp" if self.fsdp else None
        if self.strategy is None:
            self.strategy = implied or "ddp"
        elif implied and implied != self.strategy:
            raise ValueError(f"strategy {self.strategy} contradicts the {implied} setting")
        if self.fsdp_config is not None and self.strategy != "fsdp":
            raise ValueError(f"fsdp_config needs strategy fsdp (or fsdp set), not {self.strategy}")
        if isinstance(self.deepspeed, str) and not (_PRESET.match(self.deepspeed) or self.deepspeed.endswith(".json")):
            raise ValueError(f"deepspeed {self.deepspeed!r} is neither a JSON file nor a preset "
                             f"({', '.join(DEEPSPEED_PRESETS)})")
        return self

    @property
    def deepspeed_preset(self) -> tuple[int, bool] | None:
        """(ZeRO stage, offload) when ``deepspeed`` names a preset, else None."""
        match = _PRESET.match(self.deepspeed) if isinstance(self.deepspeed, str) else None
        return (int(match.group(1)), bool(match.group(2))) if match else None
