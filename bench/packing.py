"""Training throughput with and without neat packing on variable-length data (tiny model, CPU by default).

    python bench/packing.py [--steps 8] [--batch 8] [--cutoff 512] [--device cpu]

Same model, same synthetic rows (lengths log-uniform between 16 and cutoff, prompt tokens masked):
- padded: rows batched as they come, right-padded to the longest in the batch (PaddingCollator);
- neat:   rows packed best-fit into cutoff-sized bins, each batch flattened into one row without padding
          (FlatteningCollator; position_ids restart per example).
Prints tokens/s counting real (non-padding) tokens, and the share of computed positions that were padding.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time

import torch

from kubetune.data.collators import FlatteningCollator, PaddingCollator
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


def run(model, batches, device: str) -> tuple[float, int, int]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    real = computed = 0
    # One warm-up step outside the timing.
    for i, batch in enumerate(batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        if i == 1:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= 1:
            mask = batch.get("attention_mask")
            real += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
            computed += batch["input_ids"].numel()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, real, computed


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
        flat = FlatteningCollator()
        neat = [flat(bins[i:i + args.batch]) for i in range(0, args.batch * (args.steps + 1), args.batch)]
        neat = [b for b in neat if b["input_ids"].numel()][: args.steps + 1]
        results = {}
        for name, batches in (("padded", padded), ("neat_packing", neat)):
            model.load_state_dict(state)
            results[name] = run(model, batches, args.device)
    print(f"tiny llama hidden={args.hidden} layers={args.layers}, batch={args.batch}, cutoff={args.cutoff}, "
          f"steps={args.steps} (after 1 warm-up), device={args.device}, threads={torch.get_num_threads()}")
    for name, (seconds, real, computed) in results.items():
        print(f"{name:>13}: {real / seconds:10.0f} real tokens/s   {real:7d} real tokens in {seconds:6.2f}s   "
              f"padding {100 * (computed - real) / computed:5.1f}% of computed positions")
    speedup = (results["neat_packing"][1] / results["neat_packing"][0]) / (results["padded"][1] / results["padded"][0])
    print(f"neat_packing / padded throughput: {speedup:.2f}x")


if __name__ == "__main__":
    main()
