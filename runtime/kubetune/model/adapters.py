"""Apply the fine-tuning method to a loaded model: full, freeze or LoRA/QLoRA (through peft).

``apply_method(model, method)`` returns the model to train with exactly the configured parameters requiring
gradients. Methods are a table (:data:`METHODS`); each entry is a short function. Which parameters train is
decided by pure functions of parameter names (:func:`freeze_trainable`, :func:`lora_targets`) so the rules are
tested on name lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kubetune.model.vision import freeze_parts, frozen_parts, is_vision_language, part_of

if TYPE_CHECKING:
    from kubetune.config import MethodConfig, ModelConfig


class MethodError(ValueError):
    """The method cannot be applied as configured (names the key and what was expected)."""


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit packed weights count twice (two values per byte)."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if param.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def describe_parameters(model: nn.Module) -> str:
    trainable, total = count_parameters(model)
    return f"trainable params: {trainable:,} / {total:,} ({100 * trainable / max(total, 1):.4f}%)"


def decoder_layers_prefix(model: nn.Module) -> str:
    """Dotted name of the ModuleList holding the decoder layers (``model.layers`` for Llama/Qwen2)."""
    config: Any = model.config  # a transformers config (torch types module attributes as Tensor | Module)
    layers = config.get_text_config().num_hidden_layers
    for name, module in model.named_modules():
        if part_of(name) in ("vision_tower", "projector"):
            continue
        if isinstance(module, nn.ModuleList) and len(module) == layers:
            return name
    raise MethodError("finetuning_type freeze: cannot find the decoder layers of this model")


def freeze_trainable(names: Iterable[str], layers_prefix: str, num_layers: int, trainable_layers: int,
                     trainable_modules: list[str], extra_modules: list[str] | None) -> set[str]:
    """Parameter names that train under method freeze.

    ``trainable_layers`` n > 0 trains the last n decoder layers, n < 0 the first -n; within them only the
    modules named in ``trainable_modules`` (``all`` = every module). ``extra_modules`` names modules outside the
    decoder layers (``embed_tokens``, ``norm``, ``lm_head``) that train too.
    """
    if trainable_layers == 0 or abs(trainable_layers) > num_layers:
        raise MethodError(f"freeze_trainable_layers: expected 1..{num_layers} or -{num_layers}..-1, "
                          f"got {trainable_layers}")
    ids = range(num_layers - trainable_layers, num_layers) if trainable_layers > 0 else range(-trainable_layers)
    layer_re = re.compile(rf"^{re.escape(layers_prefix)}\.(\d+)\.(.+)$")
    chosen: set[str] = set()
    for name in names:
        match = layer_re.match(name)
        if match:
            if int(match.group(1)) in ids and (
                "all" in trainable_modules or any(f".{m}." in f".{match.group(2)}" for m in trainable_modules)
            ):
                chosen.add(name)
        elif extra_modules and any(f".{m}." in f".{name}" for m in extra_modules):
            chosen.add(name)
    return chosen


# Output heads: never LoRA targets (a reward model's score head trains fully, as a module to save).
HEADS = ("lm_head", "score", "classifier", "v_head")


def lora_targets(model: nn.Module, target: list[str]) -> list[str]:
    """LoRA target module names; ``all`` = every linear layer (quantized ones too) except the output heads."""
    if "all" not in target:
        return list(target)
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    names = set()
    for name, module in model.named_modules():
        if module is output or name.split(".")[-1] in HEADS:
            continue
        if isinstance(module, nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.add(name.split(".")[-1])
    if not names:
        raise MethodError("lora_target: all found no linear layers in this model; name the modules instead")
    return sorted(names)


def vision_lora_targets(names: Iterable[str], target: list[str], frozen: set[str]) -> list[str]:
    """Full names of a vision-language model's linear modules that LoRA adapts: those of the parts not frozen,
    except the projector (trained whole, see :func:`vision_modules_to_save`) and the output head.

    ``names`` are the linear modules' names; ``target`` is lora_target (``all`` or module names).
    """
    chosen = []
    for name in names:
        part = part_of(name)
        if part is None or part == "projector" or part in frozen or name.split(".")[-1] in HEADS:
            continue
        if "all" in target or name.split(".")[-1] in target:
            chosen.append(name)
    if not chosen:
        raise MethodError(f"lora_target: {','.join(target)} matched no module of the parts that train "
                          f"(frozen: {', '.join(sorted(frozen)) or 'none'})")
    return chosen


def vision_modules_to_save(method: MethodConfig) -> list[str]:
    """The projector trains whole when freeze_multi_modal_projector is off (LLaMA-Factory does the same)."""
    return [] if method.freeze_multi_modal_projector else ["multi_modal_projector", "merger"]


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt")]


def _upcast_trainable(model: nn.Module) -> None:
    # Mixed-precision training keeps master weights in fp32: the optimizer state of bf16 weights loses updates.
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.to(torch.float32)


def apply_full(model: nn.Module, method: MethodConfig, model_cfg: ModelConfig, *, trainable: bool,
               task: str = "causal_lm") -> nn.Module:
    del model_cfg, task
    for param in model.parameters():
        param.requires_grad_(trainable)
    if is_vision_language(model.config):
        freeze_parts(model, method)
    if trainable:
        _upcast_trainable(model)
    return model


def apply_freeze(model: nn.Module, method: MethodConfig, model_cfg: ModelConfig, *, trainable: bool,
                 task: str = "causal_lm") -> nn.Module:
    del model_cfg
    prefix = decoder_layers_prefix(model)
    names = [n for n, _ in model.named_parameters()]
    config: Any = model.config
    layers = config.get_text_config().num_hidden_layers
    chosen = freeze_trainable(names, prefix, layers, method.freeze_trainable_layers,
                              method.freeze_trainable_modules, method.freeze_extra_modules)
    if not chosen:
        raise MethodError(f"freeze_trainable_modules: {method.freeze_trainable_modules} matched no parameter")
    for name, param in model.named_parameters():
        head = task == "seq_cls" and name.split(".")[0] in HEADS  # a new reward head always trains
        param.requires_grad_(trainable and (name in chosen or head))
    if is_vision_language(model.config):
        freeze_parts(model, method)
    if trainable:
        _upcast_trainable(model)
    return model


def _lora_config(model: nn.Module, method: MethodConfig, task: str = "causal_lm") -> Any:
    from peft import LoraConfig, TaskType

    init: bool | str = True
    if method.pissa_init:
        init = "pissa" if method.pissa_iter == -1 else f"pissa_niter_{method.pissa_iter}"
    targets, to_save = lora_targets(model, method.lora_target), list(method.additional_target or [])
    if is_vision_language(model.config):
        targets = vision_lora_targets(_linear_names(model), method.lora_target, frozen_parts(method))
        to_save += vision_modules_to_save(method)
    return LoraConfig(
        # SEQ_CLS makes peft train and save the score head with the adapter (reward models).
        task_type=TaskType.SEQ_CLS if task == "seq_cls" else TaskType.CAUSAL_LM,
        r=method.lora_rank,
        lora_alpha=method.lora_alpha or 2 * method.lora_rank,
        lora_dropout=method.lora_dropout,
        target_modules=targets,
        modules_to_save=to_save or None,
        use_rslora=method.use_rslora,
        use_dora=method.use_dora,
        # PEFT's Literal spells the pattern "pissa_niter_[number of iters]"; the value is pissa_niter_<n>
        init_lora_weights=init,  # type: ignore[arg-type]
    )


def apply_lora(model: nn.Module, method: MethodConfig, model_cfg: ModelConfig, *, trainable: bool,
               task: str = "causal_lm") -> nn.Module:
    """Add a LoRA adapter, or continue one: earlier adapters in ``adapter_name_or_path`` are merged into the
    base, the last is trained further unless ``create_new_adapter`` asks for a fresh one on top."""
    from peft import PeftModel, get_peft_model

    from kubetune.quiet import silence_known_deprecations

    silence_known_deprecations()  # peft reads a deprecated transformers attribute on every wrap

    adapters = list(model_cfg.adapter_name_or_path or [])
    quantized = method.quantization_bit is not None
    resume = adapters[-1] if adapters and not method.create_new_adapter else None
    to_merge = adapters[:-1] if resume else adapters
    if to_merge and quantized:
        raise MethodError("adapter_name_or_path: a quantized base takes one adapter; merge the others first "
                          "(kubetune export) or drop create_new_adapter")
    subfolder: dict[str, Any] = {"subfolder": model_cfg.adapter_folder} if model_cfg.adapter_folder else {}
    for path in to_merge:
        model = PeftModel.from_pretrained(model, path, **subfolder).merge_and_unload()
    if resume is not None:
        model = PeftModel.from_pretrained(model, resume, is_trainable=trainable, **subfolder)
    elif trainable:
        model = get_peft_model(model, _lora_config(model, method, task))
    if trainable:
        _upcast_trainable(model)
    return model


METHODS: dict[str, Callable[..., nn.Module]] = {
    "full": apply_full,
    "freeze": apply_freeze,
    "lora": apply_lora,
    "qlora": apply_lora,
}


def apply_method(model: nn.Module, method: MethodConfig, model_cfg: ModelConfig, *,
                 trainable: bool = True, task: str = "causal_lm") -> nn.Module:
    """Make exactly the parameters of ``method.finetuning_type`` trainable (or none, for a frozen copy).

    ``task`` is ``causal_lm`` or ``seq_cls`` (a reward model: its ``score`` head trains under every method).
    """
    return METHODS[method.finetuning_type](model, method, model_cfg, trainable=trainable, task=task)


def loraplus_optimizer(model: nn.Module, optimizer_cls: type[torch.optim.Optimizer], optimizer_kwargs: dict[str, Any],
                       method: MethodConfig, weight_decay: float) -> torch.optim.Optimizer:
    """LoRA+ (Hayou et al., 2024): the B matrices learn ``loraplus_lr_ratio`` times faster than the A matrices."""
    from peft.optimizers import create_loraplus_optimizer

    kwargs = dict(optimizer_kwargs)
    lr = kwargs.pop("lr")
    assert method.loraplus_lr_ratio is not None, "called only when loraplus_lr_ratio is set"
    # PEFT annotates a PeftModel; it walks the parameters of any module holding LoRA layers (the Trainer's model)
    return create_loraplus_optimizer(model, optimizer_cls, lr=lr,  # type: ignore[arg-type]
                                     loraplus_lr_ratio=method.loraplus_lr_ratio,
                                     loraplus_lr_embedding=method.loraplus_lr_embedding,
                                     loraplus_weight_decay=weight_decay, **kwargs)
