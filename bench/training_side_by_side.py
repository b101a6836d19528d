"""kubetune and LLaMA-Factory side by side: the same configs through both CLIs, interleaved, on CPU.

    python bench/training_side_by_side.py [--pairs 3] [--models tiny,medium] [--paths padded,packing,neat_packing,dpo]
                                          [--out DIR] [--kubetune-bin .venv/bin/kubetune]

One command: installs LLaMA-Factory's release in its own environment (bench/setup-llamafactory.sh, same torch),
builds the tokenizer, a tiny (0.9M) and a medium (13.9M) Llama and the data locally (bench/side_by_side_assets.py),
then for every pair runs each (model, path) through both tools back to back, alternating which goes first. Each
tool gets the same LLaMA-Factory-style YAML (only output_dir differs). Reported per path, median over pairs:

- real tokens/s: non-padding tokens trained on / the Trainer's train_runtime. Both tools see the same rows (same
  sampler seed); for packed paths a row is a bin, and tokens per bin = dataset tokens / bins of that tool.
- ratio: kubetune tokens/s / LLaMA-Factory tokens/s (> 1: kubetune faster), per pair, then the median.
- losses at matched steps (the logged means) and their largest absolute difference.
- peak RSS of the whole CLI process and the time before the first step (process wall - train_runtime).
- CPU "MFU": achieved model FLOP/s over this machine's measured fp32 matmul FLOP/s (the ceiling).

The machine may be shared: the 1-minute load average is recorded at the start of every run. Results go to
``--out`` (results.json, one folder per run with logs) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from side_by_side_assets import MODELS, build_assets  # noqa: E402

CACHE = Path(os.environ.get("KUBETUNE_CACHE", Path.home() / ".cache" / "kubetune"))
PATHS = ("padded", "packing", "neat_packing", "dpo")
STEPS = {"tiny": 20, "medium": 10}
ENV = {"PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false",
       "DISABLE_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"}


def config(path: str, model_dir: Path, data_dir: Path, out_dir: Path, steps: int, scale: int = 1) -> dict[str, Any]:
    """The LLaMA-Factory-style YAML both tools run (LoRA r8 on all linear layers, fp32, batch 8); ``scale``
    multiplies the steps (and DPO's pairs, so its run stays one epoch)."""
    cfg: dict[str, Any] = {
        "model_name_or_path": str(model_dir), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0,
        "dataset_dir": str(data_dir), "dataset": "bench_sft", "template": "llama3", "cutoff_len": 256,
        "output_dir": str(out_dir), "logging_steps": 5, "save_steps": 100000, "report_to": "none",
        "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "learning_rate": 1.0e-3,
        "max_steps": steps * scale, "lr_scheduler_type": "cosine", "warmup_ratio": 0.0, "bf16": False, "fp16": False,
        "seed": 42, "disable_gradient_checkpointing": True, "dataloader_num_workers": 0,
    }
    if path == "packing":
        cfg["packing"] = True
    elif path == "neat_packing":
        cfg.update(packing=True, neat_packing=True)
    elif path == "dpo":
        # One epoch over the first pairs (DPO runs train on every pair; kubetune then scores the reference once).
        cfg.update(stage="dpo", dataset="bench_dpo", pref_beta=0.1, pref_loss="sigmoid", max_samples=40 * scale,
                   max_steps=10 * scale, per_device_train_batch_size=4)
    return cfg


def lf_extra() -> dict[str, Any]:
    """Keys only LLaMA-Factory reads. Both tools reuse their tokenized data from the previous run (LLaMA-Factory
    through the datasets cache, kubetune through its own), so the time before the first step is warm for both."""
    return {"preprocessing_num_workers": 1, "overwrite_output_dir": True, "plot_loss": False}


def write_yaml(cfg: dict[str, Any], file: Path) -> None:
    import yaml

    file.write_text(yaml.safe_dump(cfg, sort_keys=False))


def run_one(argv: list[str], run_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run a CLI under /usr/bin/time; returns wall seconds, peak RSS and the load average at the start."""
    run_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    timing = run_dir / "time.txt"
    started = time.perf_counter()
    with (run_dir / "log.txt").open("w") as log:
        rc = subprocess.call(["/usr/bin/time", "-f", "%M", "-o", str(timing), *argv], stdout=log,
                             stderr=subprocess.STDOUT, env={**os.environ, **ENV, **env}, cwd=run_dir)
    wall = time.perf_counter() - started
    rss_kb = int(timing.read_text().split()[-1]) if timing.is_file() else 0
    return {"rc": rc, "wall_s": wall, "peak_rss_mib": rss_kb / 1024, "load1": load}


def losses(out_dir: Path) -> dict[int, float]:
    """Logged training losses by step from either tool's trainer_log.jsonl."""
    found: dict[int, float] = {}
    file = out_dir / "trainer_log.jsonl"
    for line in file.read_text().splitlines() if file.is_file() else []:
        rec = json.loads(line)
        step = rec.get("step", rec.get("current_steps"))
        if "loss" in rec and step is not None and rec["loss"] is not None:
            found[int(step)] = float(rec["loss"])
    return found


def rows_trained(log: str, tool: str) -> int | None:
    """Training rows (examples or packed bins) the tool reported."""
    import re

    pattern = r"data\s+([\d,]+) training sequences" if tool == "kubetune" else r"Num examples = ([\d,]+)"
    match = re.search(pattern, log)
    return int(match.group(1).replace(",", "")) if match else None


def reference_seconds(log: str) -> float:
    """Seconds kubetune spent computing DPO reference log-probs once before training (0 when it did not)."""
    import re

    match = re.search(r"reference log-probs of [\d,]+ pairs computed once in ([\d.]+)s", log)
    return float(match.group(1)) if match else 0.0


def train_runtime(out_dir: Path) -> float | None:
    for name in ("train_results.json", "all_results.json"):
        file = out_dir / name
        if file.is_file():
            value = json.loads(file.read_text()).get("train_runtime")
            if value:
                return float(value)
    return None


def dataset_tokens(root: Path, path: str) -> tuple[int, int]:
    """(rows, non-padding tokens) of the tokenized training set, from kubetune's own data layer."""
    from kubetune.config.loader import load_config
    from kubetune.data import build_datasets
    from kubetune.model.loader import load_tokenizer

    tmp = root / "count"
    tmp.mkdir(exist_ok=True)
    file = tmp / f"{path}.yaml"
    cfg_dict = config("padded" if path != "dpo" else "dpo", root / "tiny", root / "data", tmp / path, 10)
    write_yaml(cfg_dict, file)
    cfg = load_config(str(file))
    tokenizer = load_tokenizer(cfg.model)
    if path == "dpo":
        from kubetune.data.preference import encode_pair
        from kubetune.train.preference import encode_dataset, pair_kwargs

        bundle = build_datasets(cfg, tokenizer, cfg.stage)
        enc = encode_dataset(bundle.train, encode_pair, cfg, tokenizer, **pair_kwargs(cfg, tokenizer))
        tokens = sum(len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in enc)
        return len(enc), tokens
    bundle = build_datasets(cfg, tokenizer, cfg.stage)
    return len(bundle.train), sum(len(r["input_ids"]) for r in bundle.train)


def matmul_ceiling(threads: int, seconds: float = 4.0) -> dict[str, float]:
    """Best fp32 GEMM FLOP/s of this machine over a few square sizes, with the runs' thread count."""
    import torch

    torch.set_num_threads(threads)
    best: dict[str, float] = {}
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 4:
            a @ b
            reps += 1
        best[str(n)] = 2 * n**3 * reps / (time.perf_counter() - start)
    best["peak"] = max(best.values())
    best["threads"] = float(torch.get_num_threads())
    return best


def flops_per_token(model: str, path: str, mean_len: float) -> float:
    """Model FLOPs per real token (MFU convention, recomputation not counted).

    LoRA: the frozen weights need forward (2N) and input gradients (2N); the adapters forward, input and weight
    gradients (6 N_lora). Attention scores and values: 4·L·d·(mean attended context) forward, x3 with backward.
    DPO adds the reference forward (2N + attention forward) for every token.
    """
    s = MODELS[model]
    d, inter, layers = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
    n_frozen = layers * (4 * d * d + 3 * d * inter) + d * 1024
    n_lora = layers * 8 * (4 * 2 * d + 2 * (d + inter) + (inter + d))
    attention = 4 * layers * d * (mean_len / 2)
    flops = 4 * n_frozen + 6 * n_lora + 3 * attention
    if path == "dpo":
        flops += 2 * n_frozen + attention
    return flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--summarize", type=Path, help="only print the table again from an --out folder's results")
    parser.add_argument("--scale", type=int, default=1,
                        help="multiply every run's steps (and DPO's pairs, up to the 400 in the data): longer runs "
                             "for a quiet machine, where a default run takes seconds")
    parser.add_argument("--models", default="tiny,medium")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/kubetune-side-by-side"))
    parser.add_argument("--kubetune-bin", default=str(Path(sys.executable).with_name("kubetune")),
                        help="the kubetune CLI to measure")
    parser.add_argument("--kubetune-source", type=Path, default=None,
                        help="a runtime/ folder to measure instead (git archive REV runtime | tar -x)")
    parser.add_argument("--assets", type=Path, default=CACHE / "side-by-side-assets")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads per run (OMP/MKL); 1 is the steadiest on a shared machine")
    args = parser.parse_args()
    if args.summarize:
        saved = json.loads((args.summarize / "results.json").read_text())
        runs = saved["runs"]
        models, paths = sorted({r["model"] for r in runs}), [p for p in PATHS if any(r["path"] == p for r in runs)]
        print(table(summarize(runs, saved["counts"], saved["ceiling"], models, paths)))
        return 0
    ENV.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    models, paths = args.models.split(","), args.paths.split(",")

    lf_bin = subprocess.run(["bash", str(HERE / "setup-llamafactory.sh")], check=True, capture_output=True,
                            text=True).stdout.strip().splitlines()[-1]
    root = build_assets(args.assets)
    args.out.mkdir(parents=True, exist_ok=True)
    ceiling = matmul_ceiling(args.threads)
    print(f"fp32 matmul ceiling: {ceiling['peak'] / 1e9:.1f} GFLOP/s ({ceiling['threads']:.0f} threads)", flush=True)
    counts = {p: dataset_tokens(root, p) for p in paths}
    runs: list[dict[str, Any]] = []
    for pair in range(args.pairs):
        for model in models:
            for path in paths:
                tools = ["llamafactory", "kubetune"] if pair % 2 == 0 else ["kubetune", "llamafactory"]
                for tool in tools:
                    run_dir = args.out / f"{model}-{path}-{tool}-{pair}"
                    out_dir = run_dir / "output"
                    cfg = config(path, root / model, root / "data", out_dir, STEPS[model], args.scale)
                    if tool == "llamafactory":
                        cfg |= lf_extra()
                    run_dir.mkdir(parents=True, exist_ok=True)
                    write_yaml(cfg, run_dir / "cfg.yaml")
                    argv = ([f"{lf_bin}/llamafactory-cli", "train", "cfg.yaml"] if tool == "llamafactory"
                            else [args.kubetune_bin, "train", "cfg.yaml", "--no-progress"])
                    env = ({"PYTHONPATH": str(args.kubetune_source)}
                           if tool == "kubetune" and args.kubetune_source else {})
                    result = run_one(argv, run_dir, env)
                    log = (run_dir / "log.txt").read_text(errors="replace")
                    if tool == "kubetune" and result["rc"] == 0:  # time kubetune spent before the first step on
                        result["reference_s"] = reference_seconds(log)  # what LLaMA-Factory does inside its steps
                    result |= {"tool": tool, "model": model, "path": path, "pair": pair,
                               "train_runtime_s": train_runtime(out_dir), "losses": losses(out_dir),
                               "rows": rows_trained(log, tool), "steps": cfg["max_steps"],
                               "batch": cfg["per_device_train_batch_size"]}
                    runs.append(result)
                    print(f"{model:6} {path:12} {tool:12} pair {pair}: rc {result['rc']} "
                          f"train {result['train_runtime_s']} s, wall {result['wall_s']:.1f} s, "
                          f"rss {result['peak_rss_mib']:.0f} MiB, load {result['load1']:.1f}", flush=True)
    after = matmul_ceiling(args.threads)  # once more at the end: the better of the two is the ceiling
    ceiling = {k: max(v, after[k]) for k, v in ceiling.items()}
    print(f"fp32 matmul ceiling (best of start and end): {ceiling['peak'] / 1e9:.1f} GFLOP/s", flush=True)
    summary = summarize(runs, counts, ceiling, models, paths)
    (args.out / "results.json").write_text(json.dumps({"ceiling": ceiling, "counts": counts, "runs": runs,
                                                       "summary": summary}, indent=1, default=str))
    print(table(summary))


def real_tokens(run: dict[str, Any], counts: dict[str, tuple[int, int]]) -> float | None:
    """Non-padding tokens the run trained on: rows consumed x tokens per row of this tool's dataset."""
    rows, tokens = counts[run["path"]]
    tool_rows = run["rows"] or rows
    if run["path"] in ("padded", "dpo"):
        tool_rows = rows  # the same examples in both tools
    consumed = run["steps"] * run["batch"]  # max_steps: the Trainer starts another epoch when the rows run out
    return consumed * tokens / tool_rows


def summarize(runs: list[dict[str, Any]], counts: dict[str, tuple[int, int]], ceiling: dict[str, float],
              models: list[str], paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for model in models:
        for path in paths:
            mine = [r for r in runs if r["model"] == model and r["path"] == path and r["rc"] == 0
                    and r["train_runtime_s"]]
            by_pair: dict[int, dict[str, dict[str, Any]]] = {}
            for r in mine:  # kubetune's up-front reference pass counts as training time
                r["tokens_per_s"] = real_tokens(r, counts) / (r["train_runtime_s"] + r.get("reference_s", 0.0))
                by_pair.setdefault(r["pair"], {})[r["tool"]] = r
            ratios = [p["kubetune"]["tokens_per_s"] / p["llamafactory"]["tokens_per_s"]
                      for p in by_pair.values() if len(p) == 2]
            row: dict[str, Any] = {"model": model, "path": path, "pairs": len(ratios),
                                   "ratio_median": statistics.median(ratios) if ratios else None,
                                   "ratios": ratios}
            rows, tokens = counts[path]
            mean_len = tokens / rows / (2 if path == "dpo" else 1)
            for tool in ("llamafactory", "kubetune"):
                sel = [r for r in mine if r["tool"] == tool]
                if not sel:
                    continue
                tps = statistics.median(r["tokens_per_s"] for r in sel)
                row[tool] = {
                    "tokens_per_s": tps,
                    "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in sel),
                    "before_first_step_s": statistics.median(
                        r["wall_s"] - r["train_runtime_s"] - r.get("reference_s", 0.0) for r in sel),
                    "mfu": tps * flops_per_token(model, path, mean_len) / ceiling["peak"],
                    "losses": sel[0]["losses"], "load1": [round(r["load1"], 1) for r in sel],
                }
            if "llamafactory" in row and "kubetune" in row:
                a, b = row["llamafactory"]["losses"], row["kubetune"]["losses"]
                common = sorted(set(a) & set(b))
                row["matched_steps"] = len(common)
                row["max_loss_diff"] = max((abs(a[s] - b[s]) for s in common), default=None)
            out.append(row)
    return out


def table(summary: list[dict[str, Any]]) -> str:
    lines = ["| model | path | kubetune / LF (median, per pair) | LF tok/s | kubetune tok/s | max loss diff "
             "(steps) | peak RSS LF / kt MiB | before 1st step LF / kt s | CPU MFU LF / kt |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in summary:
        lf, kt = row.get("llamafactory", {}), row.get("kubetune", {})
        ratio = row["ratio_median"]
        lines.append(
            f"| {row['model']} | {row['path']} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} ({', '.join(f'{r:.2f}' for r in row['ratios'])}) | "
            f"{lf.get('tokens_per_s', 0):.0f} | {kt.get('tokens_per_s', 0):.0f} | "
            f"{row.get('max_loss_diff') if row.get('max_loss_diff') is None else format(row['max_loss_diff'], '.2g')}"
            f" ({row.get('matched_steps', 0)}) | {lf.get('peak_rss_mib', 0):.0f} / {kt.get('peak_rss_mib', 0):.0f} | "
            f"{lf.get('before_first_step_s', 0):.1f} / {kt.get('before_first_step_s', 0):.1f} | "
            f"{100 * lf.get('mfu', 0):.1f}% / {100 * kt.get('mfu', 0):.1f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
