"""Build small randomly initialised causal LMs from a config: for tests, benchmarks and the offline demo.

Nothing is downloaded: the architecture comes from transformers' config classes and the tokenizer from a local
directory (tests/assets/tokenizer by default).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PretrainedConfig, Qwen2Config

ASSETS_TOKENIZER = Path(__file__).resolve().parents[3] / "tests" / "assets" / "tokenizer"

# each architecture takes its own keyword arguments (the base class takes none of them)
ARCHITECTURES: dict[str, Callable[..., PretrainedConfig]] = {"llama": LlamaConfig, "qwen2": Qwen2Config}


def tiny_config(arch: str, vocab_size: int, *, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                kv_heads: int = 2, intermediate_size: int = 128, max_positions: int = 2048,
                pad_token_id: int | None = None, eos_token_id: int | None = None) -> PretrainedConfig:
    """A small config of the given architecture (llama or qwen2)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )


def build_tiny_model(out_dir: str | Path, arch: str = "llama", tokenizer_dir: str | Path = ASSETS_TOKENIZER,
                     seed: int = 0, chat_template: str | None = None, **sizes: int) -> Path:
    """Write a randomly initialised model plus its tokenizer to ``out_dir`` (HF layout) and return the path.

    Args:
        out_dir: target directory (created).
        arch: ``llama`` or ``qwen2``.
        tokenizer_dir: a local tokenizer directory to copy next to the weights.
        seed: initialisation seed; the same seed gives the same weights.
        chat_template: optional Jinja chat template stored in the tokenizer config.
        sizes: overrides for :func:`tiny_config` (hidden_size, layers, heads, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = tiny_config(arch, len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, **sizes)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def copy_tokenizer(src: str | Path, dst: str | Path) -> None:
    """Copy tokenizer files only (used when a test needs a tokenizer without weights)."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    for f in Path(src).iterdir():
        shutil.copy2(f, Path(dst) / f.name)
