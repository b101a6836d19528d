"""Training throughput with and without neat packing on variable-length data (tiny model, CPU by default).

    python bench/packing.py [--steps 8] [--batch 8] [--cutoff 512] [--device cpu]

Same model, same synthetic rows (lengths log-uniform between 16 and cutoff, prompt tokens masked):
- padded:       rows batched as they come, right-padded to the longest in the batch (PaddingCollator);
- neat_flat:    rows packed best-fit into cutoff-sized bins, each batch flattened into one row without padding
                (FlatteningCollator; position_ids restart per example): the layout for flash-attention varlen;
- neat_rows:    the same bins, one right-padded row per bin (PackedRowsCollator): the layout kubetune uses under
                sdpa/eager, whose attention and mask cost grow with the square of a row.
The layouts take turns step by step (one warm-up step each), so a busy machine slows them alike. Prints tokens/s
counting real (non-padding) tokens, and the share of computed positions that were padding.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import time

import torch

from kubetune.data.collators import FlatteningCollator, PackedRowsCollator, PaddingCollator
from kubetune.data.packing import pack_bins
from kubetune.model.tiny import build_tiny_model


def synthetic_rows(n: int, cutoff: int, vocab: int, seed: int = 0) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = int(math.exp(rng.uniform(math.log(16), math.log(cutoff))))
        ids = [rng.randrange(10, vocab) for _ in range(length)]
        prompt = length // 3
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def step(model, opt, batch, device: str) -> float:
    batch = {k: v.to(device) for k, v in batch.items()}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss = model(**batch, use_cache=False).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def real_and_computed(batch) -> tuple[int, int]:
    """(real, computed) positions of a padded batch (its attention mask counts the real ones)."""
    return int(batch["attention_mask"].sum()), batch["input_ids"].numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(tmp, "llama", hidden_size=args.hidden, layers=args.layers,
                                intermediate_size=args.hidden * 2)
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").to(args.device)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        vocab = model.config.vocab_size
        rows = synthetic_rows(args.batch * (args.steps + 1) * 2, args.cutoff, vocab)
        pad = PaddingCollator(pad_token_id=0)
        padded = [pad(rows[i:i + args.batch]) for i in range(0, args.batch * (args.steps + 1), args.batch)]
        bins = pack_bins(rows, args.cutoff)
        groups = [g for g in (bins[i:i + args.batch] for i in range(0, len(bins), args.batch))][: args.steps + 1]
        layouts = {"padded": padded, "neat_flat": [FlatteningCollator()(g) for g in groups],
                   "neat_rows": [PackedRowsCollator(pad_token_id=0)(g) for g in groups]}
        # Real tokens of a packed batch: the bins' own lengths (the padding of neat_rows left out).
        bin_tokens = [sum(len(b["input_ids"]) for b in g) for g in groups]
        models, opts = {}, {}
        for name in layouts:
            models[name] = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").to(args.device)
            models[name].load_state_dict(state)
            models[name].train()
            opts[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4)
        results = {name: [0.0, 0, 0] for name in layouts}
        steps = min(len(b) for b in layouts.values())
        for i in range(steps):
            for name, batches in layouts.items():
                seconds = step(models[name], opts[name], batches[i], args.device)
                if i == 0:
                    continue  # warm-up
                if name == "padded":
                    real, computed = real_and_computed(batches[i])
                else:
                    real, computed = bin_tokens[i], batches[i]["input_ids"].numel()
                results[name][0] += seconds
                results[name][1] += real
                results[name][2] += computed
    print(f"tiny llama hidden={args.hidden} layers={args.layers}, batch={args.batch}, cutoff={args.cutoff}, "
          f"steps={args.steps} (after 1 warm-up), device={args.device}, threads={torch.get_num_threads()}")
    for name, (seconds, real, computed) in results.items():
        print(f"{name:>13}: {real / seconds:10.0f} real tokens/s   {real:7d} real tokens in {seconds:6.2f}s   "
              f"padding {100 * (computed - real) / computed:5.1f}% of computed positions")
    rate = {name: real / seconds for name, (seconds, real, _) in results.items()}
    print(f"neat_rows / padded: {rate['neat_rows'] / rate['padded']:.2f}x   "
          f"neat_rows / neat_flat: {rate['neat_rows'] / rate['neat_flat']:.2f}x   "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
