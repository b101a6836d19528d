"""Post-training quantization of a merged checkpoint: GPTQ, AWQ and bitsandbytes, each behind a lazy import.

Registry as data: each method names the Python package it needs and whether it needs a CUDA GPU. All three need
one: GPTQ and AWQ calibrate layer by layer with CUDA kernels, and bitsandbytes packs its 4/8-bit weights on the
GPU. None of them runs on a CPU-only machine; merging and casting (kubetune.export.merge) do.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase


class QuantizationUnavailable(RuntimeError):
    """The chosen method's library or hardware is missing here; the message says which and how to get it."""


@dataclass(frozen=True)
class QuantJob:
    """One quantization: read the merged model at ``src``, write the quantized one to ``out``."""

    src: Path
    out: Path
    bits: int
    group_size: int = 128
    calibration: list[list[int]] | None = None
    max_shard_size: str = "5GB"


@dataclass(frozen=True)
class Quantizer:
    package: str  # import name
    install: str  # what to pip install
    needs_cuda: bool
    run: Callable[[QuantJob], None]


def _gptq(job: QuantJob) -> None:
    from gptqmodel import GPTQModel, QuantizeConfig

    model = GPTQModel.load(str(job.src), QuantizeConfig(bits=job.bits, group_size=job.group_size))
    samples = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in job.calibration or []]
    model.quantize(samples, batch_size=1)
    model.save(str(job.out), max_shard_size=job.max_shard_size)


def _awq(job: QuantJob) -> None:
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.awq import AWQModifier
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(job.src, dtype=torch.bfloat16, device_map="auto")
    calibration = job.calibration or []
    dataset = Dataset.from_dict({"input_ids": calibration, "attention_mask": [[1] * len(c) for c in calibration]})
    recipe = [AWQModifier(ignore=["lm_head"], scheme="W4A16_ASYM", targets=["Linear"])]
    oneshot(model=model, dataset=dataset, recipe=recipe, num_calibration_samples=len(calibration),
            max_seq_length=max(len(c) for c in calibration))
    model.save_pretrained(job.out, save_compressed=True, max_shard_size=job.max_shard_size)


def _bnb(job: QuantJob) -> None:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if job.bits == 4:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch.bfloat16)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    model = AutoModelForCausalLM.from_pretrained(job.src, quantization_config=config, device_map="auto")
    model.save_pretrained(job.out, max_shard_size=job.max_shard_size)


QUANTIZERS: dict[str, Quantizer] = {
    "gptq": Quantizer("gptqmodel", "gptqmodel", needs_cuda=True, run=_gptq),
    "awq": Quantizer("llmcompressor", "llmcompressor", needs_cuda=True, run=_awq),
    "bnb": Quantizer("bitsandbytes", "bitsandbytes (kubetune[gpu])", needs_cuda=True, run=_bnb),
}


def check_available(method: str) -> Quantizer:
    """The quantizer for ``method``. Raises QuantizationUnavailable naming what is missing (package, GPU)."""
    quantizer = QUANTIZERS[method]
    missing = []
    if importlib.util.find_spec(quantizer.package) is None:
        missing.append(f"the Python package {quantizer.package!r} (pip install {quantizer.install})")
    if quantizer.needs_cuda:
        import torch

        if not torch.cuda.is_available():
            missing.append("a CUDA GPU (no quantized export runs on CPU; merging does)")
    if missing:
        raise QuantizationUnavailable(f"{method} export needs " + " and ".join(missing))
    return quantizer


def read_texts(path: str | Path) -> list[str]:
    """Calibration texts from a .txt file (one per line) or .json/.jsonl records.

    A record gives its text as ``text``, as alpaca ``instruction``/``input``/``output``, or as a chat under
    ``messages``/``conversations`` (the turns' contents joined by newlines).
    """
    path = Path(path)
    raw = path.read_text()
    if path.suffix == ".txt":
        return [line for line in raw.splitlines() if line.strip()]
    records = [json.loads(line) for line in raw.splitlines() if line.strip()] if path.suffix == ".jsonl" \
        else json.loads(raw)
    texts = []
    for record in records:
        if "text" in record:
            texts.append(str(record["text"]))
        elif "instruction" in record:
            texts.append("\n".join(str(record.get(k) or "") for k in ("instruction", "input", "output")).strip())
        else:
            turns = record.get("messages") or record.get("conversations") or []
            texts.append("\n".join(str(t.get("content") or t.get("value") or "") for t in turns))
    return [t for t in texts if t]


def calibration_windows(texts: list[str], tokenizer: PreTrainedTokenizerBase, samples: int, max_length: int,
                        seed: int = 0) -> list[list[int]]:
    """``samples`` token windows of ``max_length`` taken at seeded random offsets of the joined texts.

    Texts are tokenized and joined with EOS into one stream, so short texts still fill whole windows; when the
    whole stream is shorter than one window, the stream itself is the only sample.
    """
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if tokenizer.eos_token_id is not None:
            stream.append(tokenizer.eos_token_id)
    if not stream:
        raise ValueError("the calibration data holds no text")
    if len(stream) <= max_length:
        return [stream]
    rng = random.Random(seed)
    starts = [rng.randrange(0, len(stream) - max_length + 1) for _ in range(samples)]
    return [stream[s:s + max_length] for s in starts]


def quantize(method: str, src: Path, out: Path, *, bits: int, group_size: int, calibration_file: str | None,
             samples: int, max_length: int, max_shard_size: str) -> None:
    """Quantize the checkpoint at ``src`` into ``out`` (weights, config and tokenizer). No manifest."""
    quantizer = check_available(method)
    tokenizer = AutoTokenizer.from_pretrained(src)
    windows = None
    if calibration_file:
        windows = calibration_windows(read_texts(calibration_file), tokenizer, samples, max_length)
    print(f"quantizing with {method} to {bits} bits ({len(windows or [])} calibration samples)")
    quantizer.run(QuantJob(src=src, out=out, bits=bits, group_size=group_size, calibration=windows,
                           max_shard_size=max_shard_size))
    tokenizer.save_pretrained(out)
