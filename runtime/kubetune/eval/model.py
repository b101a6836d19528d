"""Load the model `kubetune eval` scores: a model directory, optionally with LoRA adapters merged in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune.eval.config import EvalConfig


def load_model(config: EvalConfig) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) for ``config``: a base model, a merged export, or a base with adapters.

    Adapters are merged into the weights as `kubetune export` merges them, so the scores are those of the model
    an export of the same adapters would serve. The tokenizer is the last adapter's when it saved one.

    Raises:
        ArtifactError: an adapter directory is not an adapter or was trained on another base model.
        OSError: the model directory cannot be read.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kubetune.model.devices import pick_device, pick_dtype
    from kubetune.model.merging import apply_adapters, check_adapter

    device = pick_device(config.device)
    dtype = pick_dtype(config.infer_dtype, device)
    adapters = config.adapter_name_or_path
    manifests = [check_adapter(a, strict=False) for a in adapters]
    model = AutoModelForCausalLM.from_pretrained(config.model_name_or_path, dtype=dtype, device_map=str(device),
                                                 trust_remote_code=config.trust_remote_code)
    model = apply_adapters(model, adapters, manifests).eval()
    tokenizer_dir = next((a for a in reversed(adapters) if (Path(a) / "tokenizer_config.json").is_file()),
                         config.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=config.trust_remote_code)
    return model, tokenizer
