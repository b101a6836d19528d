"""Load the tokenizer and the base model for training: dtype, attention kernel, QLoRA quantization, checkpointing.

The decisions are pure functions of the config and of what the machine has (:func:`resolve_precision`,
:func:`attention_implementation`, :func:`quantization_config`), so they are tested without a GPU; the loaders
only apply them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import import_utils

from kubetune.model.patches import (
    PatchError,
    moe_overrides,
    rope_overrides,
    upcast_layernorms,
    upcast_lmhead_output,
)
from kubetune.model.vision import is_vision_language
from kubetune.model.vocab import add_new_tokens, resize_embeddings, wants_resize

if TYPE_CHECKING:
    from kubetune.config import MethodConfig, ModelConfig

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
QLORA_UNAVAILABLE = "qlora needs bitsandbytes and a CUDA GPU; use method lora on CPU"


class ModelLoadError(RuntimeError):
    """The model cannot be loaded as configured; the message says which key to change."""


def resolve_precision(precision: str, cuda: bool, bf16_supported: bool) -> str:
    """``auto`` becomes bf16 on GPUs that support it, else fp32 (fp16 only when asked: it needs loss scaling)."""
    if precision == "auto":
        return "bf16" if cuda and bf16_supported else "fp32"
    if precision not in DTYPES:
        raise ModelLoadError(f"precision: expected auto, bf16, fp16 or fp32, got {precision!r}")
    return precision


def machine_precision(precision: str) -> str:
    """:func:`resolve_precision` for this machine."""
    cuda = torch.cuda.is_available()
    return resolve_precision(precision, cuda, cuda and torch.cuda.is_bf16_supported())


def attention_implementation(flash_attn: str, fa2_installed: bool, fa3_installed: bool, cuda: bool) -> str:
    """Map LLaMA-Factory's ``flash_attn`` key to transformers' ``attn_implementation``.

    ``auto`` picks FlashAttention-2 when it is installed and a GPU is there, else PyTorch SDPA (which also runs
    on CPU); ``disabled`` is the eager implementation. Asking for fa2/fa3 without the package is an error.
    """
    if flash_attn == "auto":
        return "flash_attention_2" if fa2_installed and cuda else "sdpa"
    if flash_attn == "disabled":
        return "eager"
    if flash_attn == "sdpa":
        return "sdpa"
    wanted = {"fa2": ("flash_attention_2", fa2_installed), "fa3": ("flash_attention_3", fa3_installed)}
    if flash_attn not in wanted:
        raise ModelLoadError(f"flash_attn: expected auto, disabled, sdpa, fa2 or fa3, got {flash_attn!r}")
    name, installed = wanted[flash_attn]
    if not (installed and cuda):
        raise ModelLoadError(f"flash_attn: {flash_attn} needs the flash-attn package and a CUDA GPU; use sdpa")
    return name


def quantization_config(method: MethodConfig, compute_dtype: torch.dtype, bnb_installed: bool,
                        cuda: bool) -> Any | None:
    """The BitsAndBytesConfig for QLoRA, or None when the base is not quantized.

    Raises ModelLoadError when quantization is asked for on a machine without bitsandbytes or CUDA.
    """
    if method.quantization_bit is None:
        return None
    if not (bnb_installed and cuda):
        raise ModelLoadError(QLORA_UNAVAILABLE)
    from transformers import BitsAndBytesConfig

    if method.quantization_bit == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=method.quantization_type,
        bnb_4bit_use_double_quant=method.double_quantization,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=compute_dtype,  # lets FSDP shard the quantized weights with the rest
    )


def load_tokenizer(model: ModelConfig) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with ``add_tokens``/``add_special_tokens`` added, a pad token (EOS when the model
    defines none) and right padding for training."""
    tokenizer = AutoTokenizer.from_pretrained(
        model.model_name_or_path,
        revision=model.model_revision,
        cache_dir=model.cache_dir,
        use_fast=model.use_fast_tokenizer,
        trust_remote_code=model.trust_remote_code,
        split_special_tokens=model.split_special_tokens,
    )
    add_new_tokens(tokenizer, model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def config_overrides(config: Any, model: ModelConfig, max_length: int | None) -> dict[str, Any]:
    """Values the model keys change in the model's config: rope_scaling (to ``max_length``, the cutoff_len) and
    moe_aux_loss_coef. Raises PatchError when a key cannot take effect on this model."""
    overrides: dict[str, Any] = {}
    if model.rope_scaling is not None:
        if max_length is None:
            raise PatchError("rope_scaling: needs cutoff_len, the length RoPE is stretched to")
        overrides |= rope_overrides(config, model.rope_scaling, max_length)
    if model.moe_aux_loss_coef is not None:
        overrides |= moe_overrides(config, model.moe_aux_loss_coef)
    return overrides


def load_model(model: ModelConfig, method: MethodConfig, *, precision: str, gradient_checkpointing: bool,
               local_rank: int = 0, auto_class: Any = None, max_length: int | None = None,
               vocab_size: int | None = None, **model_kwargs: Any) -> PreTrainedModel:
    """Load the base causal LM ready for the method to be applied (quantized for QLoRA, checkpointing on).

    Args:
        model: model keys (path, revision, flash_attn, trust_remote_code, ...).
        method: method keys; only the quantization ones matter here.
        precision: auto, bf16, fp16 or fp32 (resolved with :func:`machine_precision`).
        gradient_checkpointing: recompute activations in the backward pass to save memory.
        local_rank: this process's GPU, where quantized weights must be placed.
        auto_class: the transformers auto class (default AutoModelForCausalLM, or AutoModelForImageTextToText for
            a vision-language model; reward models use AutoModelForSequenceClassification) and ``model_kwargs``
            extra config values for it (``num_labels``).
        max_length: the training sequence length (cutoff_len), which rope_scaling stretches RoPE to.
        vocab_size: the tokenizer's length; the embeddings grow to it when new tokens or resize_vocab ask.
    """
    cuda = torch.cuda.is_available()
    dtype = DTYPES[machine_precision(precision)]
    quant = quantization_config(method, dtype, import_utils.is_bitsandbytes_available(), cuda)
    attn = attention_implementation(model.flash_attn, import_utils.is_flash_attn_2_available(),
                                    import_utils.is_flash_attn_3_available(), cuda)
    config = AutoConfig.from_pretrained(model.model_name_or_path, revision=model.model_revision,
                                        cache_dir=model.cache_dir, trust_remote_code=model.trust_remote_code)
    for key, value in {**model_kwargs, **config_overrides(config, model, max_length)}.items():
        setattr(config, key, value)
    if auto_class is None:
        auto_class = AutoModelForImageTextToText if is_vision_language(config) else AutoModelForCausalLM
    if model.train_from_scratch:
        loaded = auto_class.from_config(config, dtype=dtype, trust_remote_code=model.trust_remote_code,
                                        attn_implementation=attn)
    else:
        kwargs: dict[str, Any] = {"config": config, "dtype": dtype, "attn_implementation": attn,
                                  "revision": model.model_revision, "cache_dir": model.cache_dir,
                                  "trust_remote_code": model.trust_remote_code}
        if quant is not None:
            kwargs["quantization_config"] = quant
            kwargs["device_map"] = {"": local_rank}
        loaded = auto_class.from_pretrained(model.model_name_or_path, **kwargs)
    if vocab_size is not None and wants_resize(model):
        resize_embeddings(loaded, vocab_size, quantized=quant is not None)
    if model.upcast_layernorm:
        upcast_layernorms(loaded)
    if model.upcast_lmhead_output:
        upcast_lmhead_output(loaded)
    checkpointing = {"use_reentrant": model.use_reentrant_gc}
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        loaded = prepare_model_for_kbit_training(loaded, use_gradient_checkpointing=gradient_checkpointing,
                                                 gradient_checkpointing_kwargs=checkpointing)
    elif gradient_checkpointing:
        loaded.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing)
        # With frozen embeddings (LoRA, freeze) reentrant checkpointing needs inputs that require grad.
        loaded.enable_input_require_grads()
    loaded.config.use_cache = False  # the KV cache is useless in training and conflicts with checkpointing
    return loaded


def decoder_layer_classes(model: ModelConfig) -> list[str]:
    """Class names of the model's decoder layers (its ``_no_split_modules``), read from the config alone.

    FSDP wraps each of them as one shard unit; this is needed before the weights are loaded. A vision-language model
    gives its language model's and its vision tower's layers.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model.model_name_or_path, revision=model.model_revision,
                                        cache_dir=model.cache_dir, trust_remote_code=model.trust_remote_code)
    return layer_classes_of(config, model.trust_remote_code)


def layer_classes_of(config: Any, trust_remote_code: bool = False) -> list[str]:
    """The no-split layer classes of the model ``config`` describes that occur in it, in a stable order.

    The model is built on the meta device (no memory, no weights): transformers gathers every part's
    ``_no_split_modules`` into the model's, and only the classes the model really contains are kept (a part's list
    may name classes of a sibling model, such as CLIP's text embeddings in a vision tower).
    """
    from transformers import AutoModelForImageTextToText

    from kubetune.model.vision import is_vision_language

    auto = AutoModelForImageTextToText if is_vision_language(config) else AutoModelForCausalLM
    try:
        with torch.device("meta"):
            built = auto.from_config(config, trust_remote_code=trust_remote_code)
    except (KeyError, ValueError):
        return []
    present = {type(module).__name__ for module in built.modules()}
    return sorted(name for name in (built._no_split_modules or ()) if name in present)
