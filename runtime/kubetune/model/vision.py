"""Vision-language models: telling them apart, their processor, and which of their parts train.

A vision-language checkpoint (Qwen2-VL, LLaVA, ...) has a ``vision_config`` and loads through
``AutoModelForImageTextToText``; its processor (image processor + tokenizer) turns pictures into ``pixel_values``.
Its parts are named by dotted prefixes (:data:`PARTS`): the vision tower, the projector that maps vision features
into the language model, and the language model. ``freeze_vision_tower`` / ``freeze_multi_modal_projector`` /
``freeze_language_model`` decide which parts train, as in LLaMA-Factory; :func:`part_of` and
:func:`frozen_parts` are pure functions of names and settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetune.config import MethodConfig, ModelConfig

# Module-name markers per part (transformers 5 layout: model.visual / model.vision_tower / model.language_model).
# The projector is checked first: Qwen2-VL's merger sits inside its vision module.
PARTS: dict[str, tuple[str, ...]] = {
    "projector": ("model.visual.merger", "model.multi_modal_projector"),
    "vision_tower": ("model.visual", "model.vision_tower"),
    "language_model": ("model.language_model", "lm_head"),
}


def part_of(name: str) -> str | None:
    """Which part a parameter or module name belongs to (None for names outside all parts)."""
    name = name.removeprefix("base_model.model.")
    for part, prefixes in PARTS.items():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return part
    return None


def frozen_parts(method: MethodConfig) -> set[str]:
    """The parts the freeze_* keys keep frozen."""
    flags = {"vision_tower": method.freeze_vision_tower, "projector": method.freeze_multi_modal_projector,
             "language_model": method.freeze_language_model}
    return {part for part, frozen in flags.items() if frozen}


def is_vision_language(config: Any) -> bool:
    """Whether a transformers config describes a vision-language model."""
    return getattr(config, "vision_config", None) is not None


def model_config(model: ModelConfig) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model.model_name_or_path, revision=model.model_revision,
                                      cache_dir=model.cache_dir, trust_remote_code=model.trust_remote_code)


def load_processor(model: ModelConfig, tokenizer: Any) -> Any | None:
    """The model's processor when it is a vision-language model (sharing ``tokenizer``), else None."""
    if not is_vision_language(model_config(model)):
        return None
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model.model_name_or_path, revision=model.model_revision,
                                              cache_dir=model.cache_dir, trust_remote_code=model.trust_remote_code)
    processor.tokenizer = tokenizer  # the one the data was tokenized with (pad token, padding side)
    return processor


def freeze_parts(model: Any, method: MethodConfig) -> None:
    """Turn off gradients of the frozen parts (full and freeze methods; LoRA picks its targets instead)."""
    frozen = frozen_parts(method)
    for name, param in model.named_parameters():
        if part_of(name) in frozen:
            param.requires_grad_(False)
