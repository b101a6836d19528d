"""transformers.TrainingArguments from the runtime config: precision, strategy (DDP/FSDP/DeepSpeed), reporters.

:func:`argument_kwargs` is the pure part (config in, keyword dict out) and is what the tests check;
:func:`training_arguments` builds the object, which also sets up the distributed state of this process.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.model.loader import machine_precision
from kubetune.model.patches import liger_kwargs
from kubetune.train.distributed import LaunchError, deepspeed_config, fsdp_config
from kubetune.train.optimizers import low_rank_arguments

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from kubetune.config import RuntimeConfig, TrainingConfig

# Trackers transformers can report to, and the package each needs.
REPORTER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
                     "trackio": ("trackio",), "comet_ml": ("comet_ml",), "swanlab": ("swanlab",)}


def precision_of(training: TrainingConfig) -> str:
    """bf16, fp16 or fp32 for this machine: an explicit ``precision`` or bf16/fp16 flag wins, else ``auto``."""
    if training.precision:
        return machine_precision(training.precision)
    if training.bf16:
        return "bf16"
    if training.fp16:
        return "fp16"
    return machine_precision("auto")


def reporters(report_to: str | list[str], installed: set[str]) -> tuple[list[str], list[str]]:
    """(trackers to use, trackers dropped because their package is missing); ``none`` gives ([], [])."""
    wanted = [report_to] if isinstance(report_to, str) else list(report_to)
    wanted = [w.strip() for item in wanted for w in item.split(",") if w.strip() and w.strip() != "none"]
    if "all" in wanted:
        wanted = list(REPORTER_PACKAGES)
    kept = [w for w in wanted if w not in REPORTER_PACKAGES or w in installed]
    return kept, [w for w in wanted if w not in kept]


def installed_reporters() -> set[str]:
    return {name for name, pkgs in REPORTER_PACKAGES.items() if any(importlib.util.find_spec(p) for p in pkgs)}


def strategy_kwargs(cfg: RuntimeConfig, layer_classes: list[str]) -> dict[str, Any]:
    """fsdp/fsdp_config or deepspeed keyword arguments for the configured strategy (none for DDP)."""
    dist, training = cfg.distributed, cfg.training
    if dist.strategy == "fsdp":
        if isinstance(dist.fsdp_config, dict | str):
            return {"fsdp": dist.fsdp or True, "fsdp_config": dist.fsdp_config}
        offload = isinstance(dist.fsdp, str) and "offload" in dist.fsdp.split()
        return {"fsdp": True, "fsdp_config": fsdp_config(layer_classes, offload=offload,
                                                         activation_checkpointing=training.gradient_checkpointing)}
    if dist.strategy == "deepspeed":
        preset = dist.deepspeed_preset
        if preset is not None:
            return {"deepspeed": deepspeed_config(*preset[:1], offload=preset[1])}
        if isinstance(dist.deepspeed, str) and not Path(dist.deepspeed).is_file():
            raise LaunchError(f"deepspeed: {dist.deepspeed} does not exist")
        if dist.deepspeed is None:
            return {"deepspeed": deepspeed_config(2, offload=False)}
        return {"deepspeed": dist.deepspeed}
    return {}


def check_strategy(strategy: str | None, accelerator: bool, deepspeed_installed: bool) -> None:
    """Refuse a strategy this machine cannot run instead of silently training without it.

    accelerate runs FSDP and DeepSpeed only on accelerators; on CPU it would fall back to plain DDP.
    """
    if strategy in ("fsdp", "deepspeed") and not accelerator:
        raise LaunchError(f"{strategy} needs GPUs (accelerate shards only on accelerators); "
                          "on CPU leave strategy unset to train with DDP")
    if strategy == "deepspeed" and not deepspeed_installed:
        raise LaunchError("deepspeed is not installed; pip install 'kubetune[gpu]' or use fsdp")


def argument_kwargs(cfg: RuntimeConfig, *, precision: str, layer_classes: list[str], installed: set[str],
                    output_dir: str, liger: tuple[bool, bool] = (False, False)) -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments for TrainingArguments, and the trackers dropped for a missing package.

    ``liger`` is (liger-kernel installed, CUDA available): enable_liger_kernel is refused without both.
    """
    kwargs = cfg.training.hf_kwargs()
    # The model loader turns checkpointing on itself (with use_reentrant_gc); FSDP does it through its config.
    kwargs.pop("gradient_checkpointing", None)
    report_to, dropped = reporters(cfg.training.report_to, installed)
    kwargs.update(
        output_dir=output_dir,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        report_to=report_to or "none",
        # Our datasets are already tokenized; transformers must not drop the columns the collator needs.
        remove_unused_columns=False,
        # Resume is decided by kubetune (last *complete* checkpoint), never by the Trainer's own lookup.
        resume_from_checkpoint=None,
    )
    if cfg.method.finetuning_type in ("lora", "qlora", "freeze"):
        # Frozen parameters get no gradient by design; DDP's unused-parameter search would only cost time.
        kwargs.setdefault("ddp_find_unused_parameters", False)
    kwargs.update(strategy_kwargs(cfg, layer_classes))
    kwargs.update(low_rank_arguments(cfg.optimizer, cfg.training.optim))
    kwargs.update(liger_kwargs(cfg.model.enable_liger_kernel, *liger))
    return kwargs, dropped


def training_arguments(cfg: RuntimeConfig, output_dir: str | Path, layer_classes: list[str],
                       config_cls: type[Any] | None = None, **extra: Any) -> TrainingArguments:
    """Build TrainingArguments (this also initialises torch.distributed when launched by torchrun).

    ``config_cls`` is a TrainingArguments subclass (a TRL config such as DPOConfig) and ``extra`` its own fields;
    TRL's defaults that differ from transformers' are overridden here by the kubetune config, and gradient
    checkpointing stays with the model loader.
    """
    import torch
    from transformers import TrainingArguments

    config_cls = config_cls or TrainingArguments
    if config_cls is not TrainingArguments:
        extra.setdefault("gradient_checkpointing", False)
    check_strategy(cfg.distributed.strategy, torch.accelerator.is_available(),
                   importlib.util.find_spec("deepspeed") is not None)
    liger = (importlib.util.find_spec("liger_kernel") is not None, torch.cuda.is_available())
    kwargs, dropped = argument_kwargs(cfg, precision=precision_of(cfg.training), layer_classes=layer_classes,
                                      installed=installed_reporters(), output_dir=str(output_dir), liger=liger)
    if not torch.accelerator.is_available():
        # Without this transformers treats torchrun workers on CPU as unrelated single processes (no gloo DDP).
        kwargs.setdefault("use_cpu", True)
        kwargs.setdefault("dataloader_pin_memory", False)  # pinning needs an accelerator; it only warns on CPU
    for name in dropped:
        print(f"report_to: {name} is not installed; not reporting to it (pip install {name})")
    return config_cls(**kwargs, **extra)


def render_json(config: dict[str, Any]) -> str:
    """A rendered FSDP/DeepSpeed config as people read it (kept next to the outputs)."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
