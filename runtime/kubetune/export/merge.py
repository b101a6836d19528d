"""Merge LoRA adapters into their base model and write a plain Hugging Face checkpoint.

Each step is a function with explicit inputs and outputs; the manifest is not written here (the export
pipeline writes it last, after every other file).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from kubetune.model.chatformat import stop_token_ids
from kubetune.model.merging import DTYPES, apply_adapters, check_adapter
from kubetune.model.vision import is_vision_language


class ExportError(RuntimeError):
    """An export that cannot proceed; the message says why and what to do."""


def resolve_dtype(base: str, dtype: str) -> torch.dtype:
    """The torch dtype to export in: ``auto`` keeps the dtype recorded in the base's config (float32 if none)."""
    if dtype != "auto":
        return DTYPES[dtype]
    recorded = getattr(AutoConfig.from_pretrained(base), "dtype", None)
    if isinstance(recorded, str):
        return DTYPES.get(recorded, torch.float32)
    return recorded if isinstance(recorded, torch.dtype) else torch.float32


def refuse_quantized_base(base: str) -> None:
    """Raise ExportError when ``base`` is a quantized checkpoint: merging into it would bake in rounding errors."""
    config_file = Path(base) / "config.json"
    if not config_file.is_file():
        return
    quant = json.loads(config_file.read_text()).get("quantization_config")
    if quant:
        method = quant.get("quant_method", "quantized")
        raise ExportError(
            f"{base} is a {method} checkpoint: LoRA adapters cannot be merged into a quantized base. "
            "Export from the bf16/fp16 base: set model_name_or_path to the unquantized model"
        )


def is_vision_base(base: str, trust_remote_code: bool = False) -> bool:
    """Whether ``base`` is a vision-language model (merged and saved with its processor)."""
    return is_vision_language(AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code))


def load_base(base: str, dtype: torch.dtype, device: str = "cpu", trust_remote_code: bool = False
              ) -> PreTrainedModel:
    """Load the base model in ``dtype`` on ``device`` (``auto`` spreads it over the visible GPUs): a causal LM,
    or the image-text-to-text model of a vision-language checkpoint."""
    auto_class = AutoModelForImageTextToText if is_vision_base(base, trust_remote_code) else AutoModelForCausalLM
    return auto_class.from_pretrained(base, dtype=dtype, device_map="auto" if device == "auto" else "cpu",
                                      trust_remote_code=trust_remote_code)


def save_processor(base: str, adapters: list[str], tokenizer: PreTrainedTokenizerBase, out: Path,
                   trust_remote_code: bool = False) -> None:
    """Write a vision-language model's processor next to the weights (the last adapter's when it saved one, as
    training does, else the base's), holding the exported tokenizer."""
    src = next((a for a in reversed(adapters) if (Path(a) / "processor_config.json").is_file()), base)
    processor = AutoProcessor.from_pretrained(src, trust_remote_code=trust_remote_code)
    processor.tokenizer = tokenizer
    processor.save_pretrained(out)


def merge_lora(base: str, adapters: list[str], out: str | Path, dtype: str = "auto", *,
               max_shard_size: str = "5GB", device: str = "cpu", template: str | None = None,
               strict_manifests: bool = False, trust_remote_code: bool = False) -> Path:
    """Merge ``adapters`` into ``base`` and save the result to ``out``.

    Writes ``out/config.json``, ``out/generation_config.json``, ``model*.safetensors`` (sharded at
    ``max_shard_size``, with an index when sharded) and the tokenizer files (the last adapter's tokenizer when
    it saved one, else the base's); a vision-language model also gets its processor files, so it loads with
    ``AutoModelForImageTextToText`` and ``AutoProcessor``. With no adapters the base is re-saved in ``dtype``.
    No manifest.

    Raises:
        ExportError: ``base`` is quantized.
        ArtifactError: an adapter is missing its manifest (when strict), is not an adapter, or fits another base.
    """
    refuse_quantized_base(base)
    manifests = [check_adapter(a, strict=strict_manifests) for a in adapters]
    torch_dtype = resolve_dtype(base, dtype)
    print(f"loading {base} ({str(torch_dtype).removeprefix('torch.')}, {device})")
    model = apply_adapters(load_base(base, torch_dtype, device, trust_remote_code), adapters, manifests)
    model = model.to(torch_dtype)  # type: ignore[arg-type]  # transformers types .to through a decorator
    tokenizer_src = next((a for a in reversed(adapters) if (Path(a) / "tokenizer_config.json").is_file()), base)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_src, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"  # generation pads on the left
    eos = stop_token_ids(tokenizer, template, model.generation_config.eos_token_id)
    model.generation_config.eos_token_id = eos[0] if len(eos) == 1 else eos
    out = Path(out)
    print(f"writing {out} (shards up to {max_shard_size})")
    model.save_pretrained(out, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out)
    if is_vision_language(model.config):
        save_processor(base, adapters, tokenizer, out, trust_remote_code)
    return out
