"""Training benchmark on one GPU: tokens/s, MFU and peak memory of `kubetune train` for several methods.

Self-contained and offline: builds a random Llama-style model from a config (about 1.2B parameters by default,
tokenizer from tests/assets), generates a variable-length SFT set, then runs `kubetune train` once per variant
for a fixed number of steps and reads step times from trainer_log.jsonl. Peak memory is the maximum `nvidia-smi`
reading during the run.

Every variant trains in bf16 (weights and autocast), with the fused AdamW, neat packing (one padded row per bin
under sdpa, one flattened varlen row under flash-attention when it is installed) and no gradient checkpointing: a
1.2B model at 8 x 2048 tokens fits an H200 without it. The variants:

    lora, qlora, full       the MFU figures (qlora: NF4 base, bf16 compute)
    lora_liger, full_liger  the same with Liger's fused kernels (RMSNorm, SwiGLU, RoPE, fused linear cross-entropy)
    lora_gc                 LoRA with gradient checkpointing on: what recomputation costs
    lora_padded             LoRA on right-padded batches instead of packed ones
    full_ds_z2, full_fsdp   full fine-tuning through DeepSpeed ZeRO-2 and through FSDP (one process each)

MFU follows bench/README.md: model FLOPs per token 6·N + 6·L·s·d for full fine-tuning and 4·N + 6·L·s·d for
(Q)LoRA (frozen weights need no weight-gradient GEMM), N = matmul parameters (lm_head included, input embedding
excluded), divided by 989 TFLOP/s (H100/H200 SXM dense bf16 peak) and by 790 TFLOP/s (the matmul ceiling measured
on this machine kind).

    python bench/gpu_training.py --out /tmp/bench                 # on a GPU
    python bench/gpu_training.py --tiny --only full,lora           # plumbing check on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "assets" / "tokenizer"
PEAK_TFLOPS = (989.0, 790.0)

BIG = {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 8,
       "intermediate_size": 5632, "vocab_size": 32000}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "vocab_size": 2048}

LORA = {"finetuning_type": "lora", "lora_rank": 16, "lora_target": "all"}
VARIANTS: dict[str, dict] = {
    "lora": {**LORA, "neat_packing": True},
    "qlora": {**LORA, "quantization_bit": 4, "quantization_type": "nf4", "neat_packing": True},
    "full": {"finetuning_type": "full", "neat_packing": True},
    "lora_liger": {**LORA, "neat_packing": True, "enable_liger_kernel": True},
    "full_liger": {"finetuning_type": "full", "neat_packing": True, "enable_liger_kernel": True},
    "lora_gc": {**LORA, "neat_packing": True, "gradient_checkpointing": True},
    "lora_padded": {**LORA, "packing": False},
    "full_ds_z2": {"finetuning_type": "full", "neat_packing": True, "deepspeed": "ds_z2"},
    "full_fsdp": {"finetuning_type": "full", "neat_packing": True, "fsdp": "full_shard auto_wrap"},
}


def base_config(model: Path, data_dir: Path, *, tiny: bool, steps: int, batch: int, cutoff: int) -> dict:
    """The keys every variant shares (a variant overrides some of them)."""
    return {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "dataset": "bench",
            "dataset_dir": str(data_dir), "template": "qwen", "cutoff_len": 128 if tiny else cutoff,
            "per_device_train_batch_size": 2 if tiny else batch, "gradient_accumulation_steps": 1,
            "learning_rate": 1.0e-5, "max_steps": 6 if tiny else steps, "logging_steps": 1,
            "save_steps": 100000, "report_to": "none", "bf16": not tiny, "gradient_checkpointing": False,
            "optim": "adamw_torch" if tiny else "adamw_torch_fused", "overwrite_output_dir": True}


def variant_config(name: str, base: dict, out_dir: Path) -> dict:
    """The full config of one variant."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}")
    return {**base, **VARIANTS[name], "output_dir": str(out_dir)}


def build_model(out: Path, sizes: dict) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER))
    config = LlamaConfig(**sizes, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_dataset(path: Path, rows: int, max_words: int, seed: int = 0) -> None:
    """Alpaca rows with lengths spread widely, the case where padding wastes most."""
    rng = random.Random(seed)
    words = "alpha beta gamma delta river stone cloud light paper green quick slow north south".split()
    with path.open("w") as fh:
        for _ in range(rows):
            n_in, n_out = rng.randint(8, max_words // 2), rng.randint(8, max_words // 2)
            row = {"instruction": " ".join(rng.choices(words, k=n_in)), "input": "",
                   "output": " ".join(rng.choices(words, k=n_out))}
            fh.write(json.dumps(row) + "\n")


def matmul_params(sizes: dict) -> int:
    h, i, layers, v = sizes["hidden_size"], sizes["intermediate_size"], sizes["num_hidden_layers"], sizes["vocab_size"]
    kv = h * sizes["num_key_value_heads"] // sizes["num_attention_heads"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i
    return layers * per_layer + h * v


def flops_per_token(sizes: dict, seq: int, full: bool) -> float:
    n = matmul_params(sizes)
    return (6 if full else 4) * n + 6 * sizes["num_hidden_layers"] * seq * sizes["hidden_size"]


class MemoryWatch(threading.Thread):
    """Polls nvidia-smi for the highest memory use while a run goes on."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.peak_mib = max(self.peak_mib, max(int(x) for x in out.split()))
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return
            self.stop.wait(0.5)


def real_tokens_per_row(config_path: Path) -> float:
    """Mean loss-bearing + prompt tokens per training row, read from the dataset the run itself builds."""
    from kubetune.config import load_config
    from kubetune.data import build_datasets
    from kubetune.model.loader import load_tokenizer

    cfg = load_config(config_path)
    bundle = build_datasets(cfg, load_tokenizer(cfg.model), cfg.stage)
    lengths = [len(ids) for ids in bundle.train["input_ids"]]
    return statistics.mean(lengths)


def run_variant(name: str, base: dict, args: argparse.Namespace, workdir: Path, sizes: dict) -> dict:
    out_dir = workdir / f"out-{name}"
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = variant_config(name, base, out_dir)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    tokens_row = real_tokens_per_row(path)
    watch = MemoryWatch()
    watch.start()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kubetune.cli.main", "train", str(path), "--no-progress"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    watch.stop.set()
    result: dict = {"variant": name, "rc": proc.returncode, "wall_s": round(wall, 1), "peak_mib": watch.peak_mib}
    if proc.returncode != 0:
        result["error"] = proc.stderr.strip().splitlines()[-3:]
        return result
    records = [json.loads(line) for line in (out_dir / "trainer_log.jsonl").read_text().splitlines()]
    timed = [r for r in records if "loss" in r and "elapsed" in r]
    skip = min(args.warmup, len(timed) - 2)
    first, last = timed[skip], timed[-1]
    step_s = (last["elapsed"] - first["elapsed"]) / max(last["step"] - first["step"], 1)
    rows_per_step = base["per_device_train_batch_size"] * base["gradient_accumulation_steps"]
    tok_s = tokens_row * rows_per_step / step_s
    full = cfg["finetuning_type"] == "full"
    flops = flops_per_token(sizes, base["cutoff_len"], full)
    result.update({"step_s": round(step_s, 4), "real_tok_s": round(tok_s), "tokens_per_row": round(tokens_row, 1),
                   "loss_first": timed[0]["loss"], "loss_last": last["loss"],
                   "mfu_989": round(tok_s * flops / (PEAK_TFLOPS[0] * 1e12), 4),
                   "mfu_790": round(tok_s * flops / (PEAK_TFLOPS[1] * 1e12), 4),
                   "flops_convention": "6N+6Lsd" if full else "4N+6Lsd"})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/kubetune-bench")))
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU: checks the plumbing only")
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=4, help="logged steps left out of the timing")
    parser.add_argument("--cutoff", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--render", action="store_true", help="write and print the variant configs, run nothing")
    args = parser.parse_args()
    sizes = TINY if args.tiny else BIG
    workdir = args.out / "train-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    if args.render:
        base = base_config(workdir / "model", workdir / "data", tiny=args.tiny, steps=args.steps, batch=args.batch,
                           cutoff=args.cutoff)
        for name in args.only.split(","):
            cfg = variant_config(name, base, workdir / f"out-{name}")
            (workdir / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
            print(f"--- {name}\n{yaml.safe_dump(cfg)}", end="")
        return 0
    model = build_model(workdir / "model", sizes)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    write_dataset(data_dir / "sft.jsonl", rows=4000 if not args.tiny else 200,
                  max_words=args.cutoff // 2 if not args.tiny else 120)
    (data_dir / "dataset_info.json").write_text(json.dumps({"bench": {"file_name": "sft.jsonl"}}))
    base = base_config(model, data_dir, tiny=args.tiny, steps=args.steps, batch=args.batch, cutoff=args.cutoff)
    cutoff = base["cutoff_len"]
    results = []
    for name in args.only.split(","):
        result = run_variant(name, base, args, workdir, sizes)
        results.append(result)
        print(json.dumps(result), flush=True)
    summary = {"model_params_matmul": matmul_params(sizes), "sizes": sizes, "cutoff_len": cutoff,
               "batch": base["per_device_train_batch_size"], "results": results}
    (args.out / "training_bench.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
