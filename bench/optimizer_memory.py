"""Peak memory of full fine-tuning with AdamW, GaLore, APOLLO and BAdam (kubetune's trainer, LLaMA-Factory's keys).

Offline: a random Llama (hidden 512, 8 layers by default) is built locally and trained for a few steps with each
optimizer, each in its own process so that peaks do not mix. Reported per optimizer: peak resident memory of the
process (CPU) or peak allocated CUDA memory (GPU), the bytes held in optimizer state after training, and the loss
before and after. Keys are LLaMA-Factory's defaults except the rank (16) and update interval (4 steps).

    python bench/optimizer_memory.py [--hidden 512] [--layers 8] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "adamw": {},
    "galore": {"use_galore": True, "galore_rank": 16, "galore_update_interval": 4},
    "apollo": {"use_apollo": True, "apollo_rank": 16, "apollo_update_interval": 4},
    "badam": {"use_badam": True, "badam_switch_interval": 2},
}


def state_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of every tensor reachable from ``obj`` (optimizer state, projectors, inner optimizers), once each."""
    import torch

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(state_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and type(obj).__module__.split(".")[0] in (
            "galore_torch", "apollo_torch", "badam"):
        return sum(state_bytes(v, seen) for v in vars(obj).values())
    return 0


def optimizer_state(optimizer: Any) -> int:
    """Bytes of the optimizer's state (the parameters themselves not counted)."""
    parts = [optimizer]
    inner = getattr(optimizer, "optimizer_dict", None)  # layer-wise optimizers
    if isinstance(inner, dict):
        parts = list(inner.values())
    parts = [getattr(o, "base_optimizer", o) for o in parts]  # BAdam's block optimizer
    return sum(state_bytes(dict(o.state)) for o in parts)


def run_one(name: str, hidden: int, layers: int, steps: int) -> dict[str, Any]:
    from types import SimpleNamespace

    import torch
    from datasets import Dataset

    from kubetune.config import config_from_flat
    from kubetune.model.loader import load_tokenizer
    from kubetune.model.tiny import build_tiny_model
    from kubetune.train.arguments import training_arguments
    from kubetune.train.trainer import KubetuneTrainer
    from kubetune.train.workflow import load_trainable

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model", hidden_size=hidden, layers=layers, heads=8, kv_heads=8,
                                     intermediate_size=hidden * 4)
        cfg = config_from_flat({
            "model_name_or_path": str(model_dir), "dataset": "unused", "output_dir": f"{tmp}/out",
            "finetuning_type": "full", "gradient_checkpointing": False, "learning_rate": 1e-3, "max_steps": steps,
            "per_device_train_batch_size": 4, "save_strategy": "no", "report_to": "none", "logging_steps": 1,
            "optim": "adamw_torch", **OPTIMIZERS[name]})
        tokenizer = load_tokenizer(cfg.model)
        model = load_trainable(cfg, SimpleNamespace(tokenizer=tokenizer, fsdp_layers=[],  # type: ignore[arg-type]
                                                    args=SimpleNamespace(local_rank=-1)))
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(5, len(tokenizer), (16, 128), generator=gen).tolist()
        data = Dataset.from_list([{"input_ids": row, "labels": row} for row in ids])
        args = training_arguments(cfg, f"{tmp}/trainer", [], disable_tqdm=True)
        trainer = KubetuneTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                  optimizer_keys=cfg.optimizer)
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = trainer.train()
        losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
        params = sum(p.numel() for p in model.parameters())
        peak = (torch.cuda.max_memory_allocated() if cuda
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        return {"optimizer": name, "params_m": round(params / 1e6, 1), "device": "cuda" if cuda else "cpu",
                "peak_mb": round(peak / 2**20, 1), "state_mb": round(optimizer_state(trainer.optimizer) / 2**20, 1),
                "first_loss": round(losses[0], 3), "last_loss": round(losses[-1], 3),
                "train_loss": round(result.training_loss, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--one", choices=list(OPTIMIZERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        from kubetune.quiet import silence_known_deprecations

        silence_known_deprecations()  # before peft imports bitsandbytes
        print(json.dumps(run_one(args.one, args.hidden, args.layers, args.steps)))
        return 0
    rows = []
    for name in OPTIMIZERS:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--hidden", str(args.hidden), "--layers",
                              str(args.layers), "--steps", str(args.steps)], check=True, capture_output=True,
                             text=True, cwd=ROOT)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| optimizer | params (M) | device | peak (MB) | optimizer state (MB) | loss first → last |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['optimizer']} | {r['params_m']} | {r['device']} | {r['peak_mb']} | {r['state_mb']} | "
              f"{r['first_loss']} → {r['last_loss']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
