"""One DPO training step, kubetune's lean step against TRL 1.16's stock one, in one process (CPU by default).

    python bench/dpo_step.py [--model DIR] [--steps 10] [--batch 8] [--threads 1]

Same LoRA model (r 8 on every linear layer, fp32), same synthetic pairs (prompt 16-64 tokens, answers 16-96, sigmoid
loss, reference = the policy with its adapter off) and the same batches for both. The two steps take turns batch by
batch after one warm-up each, so a busy machine slows them alike; each step is the loss (policy and reference
forwards, metrics) and its backward. Prints the median seconds per step of each, their ratio, and the largest loss
difference. ``--model`` defaults to the benchmark's tiny Llama (bench/side_by_side_assets.py builds it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from kubetune.train.dpo import KubetuneDPOTrainer

DEFAULT_MODEL = Path.home() / ".cache" / "kubetune" / "side-by-side-assets" / "tiny"


def synthetic_pairs(n: int, vocab: int, seed: int = 0) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)

    def ids(lo: int, hi: int) -> list[int]:
        return [rng.randrange(10, vocab) for _ in range(rng.randint(lo, hi))]

    return [{"prompt_ids": ids(16, 64), "chosen_ids": ids(16, 96), "rejected_ids": ids(16, 96)} for _ in range(n)]


def timed(trainer, step, batch) -> tuple[float, float]:
    start = time.perf_counter()
    loss = step(trainer.model, batch, False)
    loss.backward()
    trainer.model.zero_grad()
    return time.perf_counter() - start, float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(opts.model, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    rows = synthetic_pairs(opts.batch * (opts.steps + 1), model.config.vocab_size)
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, report_to="none", per_device_train_batch_size=opts.batch, max_length=None,
                         use_cpu=True, bf16=False, beta=0.1, loss_type=["sigmoid"])
        trainer = KubetuneDPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                     processing_class=AutoTokenizer.from_pretrained(opts.model))
        trainer.model.train()
        steps = {"lean (kubetune)": trainer._compute_loss,
                 "stock (TRL)": lambda *a: DPOTrainer._compute_loss(trainer, *a)}
        seconds: dict[str, list[float]] = {name: [] for name in steps}
        losses: dict[str, list[float]] = {name: [] for name in steps}
        for i in range(opts.steps + 1):
            batch = trainer.data_collator(rows[i * opts.batch:(i + 1) * opts.batch])
            for name, step in steps.items():
                took, loss = timed(trainer, step, batch)
                if i:  # the first batch warms up
                    seconds[name].append(took)
                    losses[name].append(loss)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, value in medians.items():
        print(f"{name:16s} {value * 1000:8.1f} ms/step (median of {opts.steps})")
    lean, stock = medians.values()
    diff = max(abs(a - b) for a, b in zip(*losses.values(), strict=True))
    print(f"stock / lean: {stock / lean:.2f}x; largest loss difference {diff:.1e}")


if __name__ == "__main__":
    main()
