"""New tokens and embedding resize: add_tokens, add_special_tokens, resize_vocab (LLaMA-Factory semantics).

Tokens are added to the tokenizer when it loads; the model's input and output embeddings are then grown to the
tokenizer's length rounded up to a multiple of 64, the new rows initialised to the mean of the old ones
(transformers' mean resizing). Under LoRA the resized embeddings train in full and are saved with the adapter
(peft ``modules_to_save``) unless ``additional_target`` names other modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from kubetune.model.patches import PatchError

if TYPE_CHECKING:
    from kubetune.config import ModelConfig

PAD_TO_MULTIPLE_OF = 64


def add_new_tokens(tokenizer: Any, model: ModelConfig) -> int:
    """Add ``add_tokens`` (ordinary) and ``add_special_tokens`` (special, never split) to ``tokenizer``.

    Returns how many tokens were new to it.
    """
    added = 0
    if model.add_tokens:
        added += tokenizer.add_tokens(list(model.add_tokens), special_tokens=False)
    if model.add_special_tokens:
        added += tokenizer.add_tokens(list(model.add_special_tokens), special_tokens=True)
    return int(added)


def wants_resize(model: ModelConfig) -> bool:
    """resize_vocab, or new tokens (which need rows in the embeddings, as LLaMA-Factory turns resize_vocab on)."""
    return bool(model.resize_vocab or model.add_tokens or model.add_special_tokens)


def resize_embeddings(model: Any, vocab_size: int, quantized: bool = False) -> int | None:
    """Grow the input and output embeddings to ``vocab_size`` (rounded up to 64) when the tokenizer has more
    tokens than the embeddings have rows. Returns the new row count, or None when nothing needed resizing.

    Raises:
        PatchError: the base is quantized, or its output head is not a plain Linear layer.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if vocab_size <= rows:
        return None
    if quantized:
        raise PatchError("add_tokens / resize_vocab: the embeddings of a quantized base cannot be resized; "
                         "train with method lora (not qlora) or add no tokens")
    if not isinstance(model.get_output_embeddings(), nn.Linear):
        raise PatchError("add_tokens / resize_vocab: this model's output head cannot be resized")
    model.resize_token_embeddings(vocab_size, pad_to_multiple_of=PAD_TO_MULTIPLE_OF)
    return int(model.get_input_embeddings().weight.shape[0])


def embedding_module_names(model: Any) -> list[str]:
    """Short names of the input and output embedding modules (``embed_tokens``, ``lm_head`` for Llama)."""
    wanted = [model.get_input_embeddings(), model.get_output_embeddings()]
    return sorted({name.split(".")[-1] for name, module in model.named_modules()
                   if any(module is w for w in wanted if w is not None)})
