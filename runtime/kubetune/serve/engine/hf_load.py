"""Load a model, its tokenizer and its adapters for the ``hf`` engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from kubetune.config.serve_args import ServeConfig
from kubetune.model.chatformat import stop_token_ids
from kubetune.model.devices import pick_device, pick_dtype
from kubetune.model.merging import apply_adapters, check_adapter, fits_base
from kubetune.model.vision import is_vision_language
from kubetune.serve.cpus import cpu_budget
from kubetune.serve.engine.hf import HFEngine
from kubetune.serve.threads import ThreadPlan, apply_threads, hidden_size, plan_threads

DEFAULT_ADAPTER = "default"  # internal name of the adapter that answers to the served model's name


def _is_dora(path: str) -> bool:
    return bool(json.loads((Path(path) / "adapter_config.json").read_text()).get("use_dora"))


def named_adapters(config: ServeConfig) -> dict[str, str]:
    """Internal adapter name -> directory, for the adapters kept separate (not merged)."""
    out = {a.name: a.path for a in config.lora_adapters}
    if config.default_adapter:
        out[DEFAULT_ADAPTER] = config.default_adapter
    return out


def size_threads(config: ServeConfig) -> ThreadPlan:
    """Choose torch's thread counts for ``config``'s model and apply them (before any weights load)."""
    model_config = AutoConfig.from_pretrained(config.model_name_or_path, trust_remote_code=config.trust_remote_code)
    plan = plan_threads(cpu_budget(), hidden_size(model_config), config.threads)
    apply_threads(plan)
    return plan


def load_hf_engine(config: ServeConfig) -> HFEngine:
    """Build the ``hf`` engine for ``config``.

    Torch's thread pools are sized first (:func:`size_threads`); the plan is the engine's ``threads``.
    ``adapter_name_or_path`` adapters are merged into the weights (as LLaMA-Factory does); ``lora_adapters`` and
    ``default_adapter`` stay separate peft adapters, chosen per request.
    """
    threads = size_threads(config)
    device = pick_device(config.device)
    dtype = pick_dtype(config.infer_dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(config.model_name_or_path, trust_remote_code=config.trust_remote_code)
    processor = load_processor(config, tokenizer)
    auto_class = AutoModelForCausalLM if processor is None else AutoModelForImageTextToText
    # a PreTrainedModel, then possibly a PeftModel around it (which forwards the model's attributes)
    model: Any = auto_class.from_pretrained(config.model_name_or_path, dtype=dtype, device_map=str(device),
                                            trust_remote_code=config.trust_remote_code)
    merged = config.adapter_name_or_path
    model = apply_adapters(model, merged, [check_adapter(a, strict=False) for a in merged])
    adapters = named_adapters(config)
    if adapters:
        from peft import PeftModel

        for name, path in adapters.items():
            manifest = check_adapter(path, strict=False)
            with fits_base(f"adapter {name!r} ({path})", manifest, config.model_name_or_path,
                           "serve it with its own base model"):
                if isinstance(model, PeftModel):
                    model.load_adapter(path, adapter_name=name)
                else:
                    model = PeftModel.from_pretrained(model, path, adapter_name=name)
    model.eval()
    max_len = config.max_model_len or getattr(model.config, "max_position_embeddings", None) or 2048
    stops = stop_token_ids(tokenizer, config.template, model.generation_config.eos_token_id)
    return HFEngine(model=model, tokenizer=tokenizer, stop_ids=frozenset(stops), adapters=tuple(adapters),
                    max_model_len=int(max_len), max_batch_size=config.max_batch_size,
                    mixed_adapters=not any(_is_dora(p) for p in adapters.values()), threads=threads,
                    processor=processor)


def load_processor(config: ServeConfig, tokenizer: Any) -> Any | None:
    """A vision-language model's processor (sharing ``tokenizer``), or None for a text model."""
    model_config = AutoConfig.from_pretrained(config.model_name_or_path, trust_remote_code=config.trust_remote_code)
    if not is_vision_language(model_config):
        return None
    processor = AutoProcessor.from_pretrained(config.model_name_or_path, trust_remote_code=config.trust_remote_code)
    processor.tokenizer = tokenizer
    return processor
