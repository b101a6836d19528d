"""Build small randomly initialised causal LMs from a config: for tests, benchmarks and the offline demo.

Nothing is downloaded: the architecture comes from transformers' config classes and the tokenizer from a local
directory (tests/assets/tokenizer by default).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    return _write_random(out, AutoModelForCausalLM, config, tokenizer, tokenizer, seed)


def _write_random(out: Path, auto: Any, config: PretrainedConfig, tokenizer: Any, saver: Any, seed: int) -> Path:
    """Initialise ``auto``'s model for ``config`` from ``seed`` and write it, with ``saver`` (tokenizer or
    processor), to ``out``; generation stops and pads as ``tokenizer`` does."""
    torch.manual_seed(seed)
    model = auto.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    saver.save_pretrained(out)
    return out


def copy_tokenizer(src: str | Path, dst: str | Path) -> None:
    """Copy tokenizer files only (used when a test needs a tokenizer without weights)."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    for f in Path(src).iterdir():
        shutil.copy2(f, Path(dst) / f.name)


VISION_TOKENS = {"qwen2_vl": ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"),
                 "llava": ("<image>",)}


def _tiny_qwen2_vl(tokenizer: Any, hidden: int, layers: int, init: float) -> tuple[PretrainedConfig, Any]:
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS["qwen2_vl"]}
    text = {"vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 2048, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                                 "mrope_section": [2, 3, 3]},
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": None, "tie_word_embeddings": False, "initializer_range": init}
    vision = {"depth": 2, "embed_dim": 32, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    # 56x56 .. 112x112 pixels: 4 to 16 image tokens per picture keeps CPU runs short.
    images = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    return config, Qwen2VLProcessor(image_processor=images, tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor())


def _tiny_llava(tokenizer: Any, hidden: int, layers: int, init: float) -> tuple[PretrainedConfig, Any]:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaProcessor

    size, patch = 56, 14
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=size, patch_size=patch, projection_dim=32)
    text = tiny_config("llama", len(tokenizer), hidden_size=hidden, layers=layers, intermediate_size=2 * hidden,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    text.initializer_range = init
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         tie_word_embeddings=False)
    images = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return config, LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=patch,
                                  vision_feature_select_strategy="default", num_additional_image_tokens=1)


VISION_BUILDERS = {"qwen2_vl": _tiny_qwen2_vl, "llava": _tiny_llava}


def build_tiny_vlm(out_dir: str | Path, arch: str = "qwen2_vl", tokenizer_dir: str | Path = ASSETS_TOKENIZER,
                   seed: int = 0, hidden_size: int = 64, layers: int = 2, initializer_range: float = 0.1) -> Path:
    """Write a randomly initialised vision-language model (qwen2_vl or llava) with its processor to ``out_dir``.

    The tokenizer from ``tokenizer_dir`` gets the family's image tokens; the processor (image processor plus
    tokenizer) is saved next to the weights, as hub checkpoints ship it. ``initializer_range`` of the language
    model is wider than transformers' 0.02: with a frozen random output head that small, logits cannot move far
    enough for a LoRA-only run to learn anything in a few steps.
    """
    from transformers import AutoModelForImageTextToText

    if arch not in VISION_BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(VISION_BUILDERS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS[arch])})
    config, processor = VISION_BUILDERS[arch](tokenizer, hidden_size, layers, initializer_range)
    return _write_random(out, AutoModelForImageTextToText, config, tokenizer, processor, seed)
