"""Padding-free SFT on CPU: the padded batch on stock sdpa against the flattened row on per-example attention.

    python bench/padding_free.py [--models tiny,medium] [--paths padded,neat_packing] [--steps 20] [--threads 1]

The benchmark's side-by-side SFT config (bench/training_side_by_side.py: LoRA r8 on every linear layer, fp32, batch
8, cutoff 256, alpaca rows of varied length; bench/side_by_side_assets.py builds the models and data) is tokenized
by kubetune's data layer. For each batch of rows the two layouts take turns in one process, after one warm-up each,
so a busy machine slows them alike: ``training_step`` (forward, loss on labelled positions, backward) on the stock
sdpa layout with the model on ``sdpa`` (``padded``: the padded batch; ``neat_packing``: one right-padded row per
bin), then on the same rows flattened into one row with the model on ``kubetune_sdpa_varlen``. Prints per model and
path the median seconds per step of each, their ratio, the positions each computes and the largest loss difference,
and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainingArguments

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from training_side_by_side import CACHE, config  # noqa: E402

from kubetune.config import config_from_flat  # noqa: E402
from kubetune.data import build_datasets  # noqa: E402
from kubetune.data.collators import FlatteningCollator, PackedRowsCollator  # noqa: E402
from kubetune.model.adapters import apply_method  # noqa: E402
from kubetune.model.loader import load_model, load_tokenizer  # noqa: E402
from kubetune.model.varlen import VARLEN_SDPA, register  # noqa: E402
from kubetune.train.trainer import KubetuneTrainer  # noqa: E402

ASSETS = CACHE / "side-by-side-assets"


def timed_step(trainer: KubetuneTrainer, attn: str, batch: dict) -> tuple[float, float]:
    trainer.model.get_base_model().set_attn_implementation(attn)
    start = time.perf_counter()
    loss = trainer.training_step(trainer.model, dict(batch))
    took = time.perf_counter() - start
    trainer.model.zero_grad()
    return took, float(loss)


def measure(name: str, path: str, steps: int, out: Path) -> dict[str, float]:
    flat = config(path, ASSETS / name, ASSETS / "data", out / name, steps)
    flat["tokenized_cache_dir"] = str(out / "tokenized")
    cfg = config_from_flat(flat)
    tokenizer = load_tokenizer(cfg.model)
    bundle = build_datasets(cfg, tokenizer, "sft")
    torch.manual_seed(0)
    model = apply_method(load_model(cfg.model, cfg.method, precision="fp32", gradient_checkpointing=False),
                         cfg.method, cfg.model)
    args = TrainingArguments(output_dir=str(out / name / "t"), report_to=[], use_cpu=True)
    trainer = KubetuneTrainer(model=model, args=args)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by train(); one micro-batch per step here
    register()
    batch_size = cfg.training.per_device_train_batch_size
    order = list(range(len(bundle.train)))
    random.Random(42).shuffle(order)
    stock = bundle.collator if path == "padded" else PackedRowsCollator(pad_token_id=tokenizer.pad_token_id)
    layouts = {f"{path} (sdpa)": ("sdpa", stock), "flattened (varlen)": (VARLEN_SDPA, FlatteningCollator())}
    seconds: dict[str, list[float]] = {k: [] for k in layouts}
    losses: dict[str, list[float]] = {k: [] for k in layouts}
    positions: dict[str, int] = dict.fromkeys(layouts, 0)
    for i in range(steps + 1):
        rows = [bundle.train[j] for j in order[i * batch_size:(i + 1) * batch_size]]
        for layout, (attn, collate) in layouts.items():
            batch = collate(rows)
            took, loss = timed_step(trainer, attn, batch)
            if i:  # the first batch warms up
                seconds[layout].append(took)
                losses[layout].append(loss)
                positions[layout] += batch["input_ids"].numel()
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    stock_s, varlen_s = medians.values()
    diff = max(abs(a - b) for a, b in zip(*losses.values(), strict=True))
    for layout, value in medians.items():
        print(f"{name:7s} {layout:22s} {value * 1000:8.1f} ms/step (median of {steps}), "
              f"{positions[layout] / steps:6.0f} positions/step")
    print(f"{name:7s} {path} / flattened: {stock_s / varlen_s:.2f}x; largest loss difference {diff:.1e}")
    return {"stock": stock_s, "varlen": varlen_s, "diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,medium")
    parser.add_argument("--paths", default="padded,neat_packing")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as out:
        for name in opts.models.split(","):
            for path in opts.paths.split(","):
                measure(name, path, opts.steps, Path(out))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
