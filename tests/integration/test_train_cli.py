"""`kubetune train` end to end on CPU with a tiny Llama: outputs, resume after SIGKILL, DDP, pt packing, LF YAML."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from kubetune.artifacts import check_artifact
from kubetune.cli.main import main as kubetune_main
from kubetune.train.callbacks import read_trainer_log
from kubetune.train.checkpoints import COMPLETE_MARKER, global_step_of, last_complete_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def write_data(root: Path, rows: int = 48) -> Path:
    """One alpaca and one sharegpt dataset plus a text corpus, registered in dataset_info.json."""
    root.mkdir(parents=True, exist_ok=True)
    alpaca = [{"instruction": f"What is {i % 6} plus {i % 4}?", "input": "", "output": f"It is {i % 6 + i % 4}."}
              for i in range(rows)]
    sharegpt = [{"conversations": [{"from": "human", "value": f"Name the colour number {i % 5}."},
                                   {"from": "gpt", "value": ["red", "green", "blue", "white", "black"][i % 5]}]}
                for i in range(rows)]
    text = [{"text": " ".join(f"word{(i * 7 + j) % 11}" for j in range(5 + i % 9))} for i in range(rows)]
    (root / "toy_alpaca.json").write_text(json.dumps(alpaca))
    (root / "toy_sharegpt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sharegpt))
    (root / "toy_text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in text))
    (root / "dataset_info.json").write_text(json.dumps({
        "toy_alpaca": {"file_name": "toy_alpaca.json"},
        "toy_sharegpt": {"file_name": "toy_sharegpt.jsonl", "formatting": "sharegpt"},
        "toy_text": {"file_name": "toy_text.jsonl", "columns": {"prompt": "text"}},
    }))
    return root


def write_config(path: Path, model: Path, data: Path, **keys) -> Path:
    """A LLaMA-Factory-style flat YAML."""
    cfg = {
        "model_name_or_path": str(model),
        "stage": "sft", "finetuning_type": "lora", "lora_rank": 4, "lora_target": "all",
        "dataset": "toy_alpaca", "dataset_dir": str(data), "template": "qwen", "cutoff_len": 64,
        "output_dir": str(path.parent / "out"),
        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 5.0e-3,
        "max_steps": 8, "logging_steps": 1, "save_steps": 4, "report_to": "none", "seed": 7,
        "gradient_checkpointing": False,
        **keys,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train_process(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kubetune.cli.main", "train", str(config), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)


def run_train(config: Path, *extra: str, timeout: float = 300) -> str:
    proc = train_process(config, *extra)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def losses(output_dir: Path) -> list[float]:
    return [r["loss"] for r in read_trainer_log(output_dir) if "loss" in r]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"))


def test_sft_lora_writes_the_artifact(tiny_llama, data_dir, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data_dir, report_to="tensorboard")
    assert kubetune_main(["train", str(config), "max_steps=6", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "stage     sft   method lora" in printed and "trainable of" in printed
    assert "attention sdpa per example, padding-free" in printed  # pt/sft on CPU: one row of real tokens
    out = tmp_path / "out"
    assert f"lora-adapter written to {out}" in printed

    manifest = check_artifact(out, expect_type="lora-adapter", base_model=str(tiny_llama), verify_files=True)
    assert manifest.stage == "sft" and manifest.method == "lora" and manifest.created_by.kind == "local"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "kubetune-config.yaml",
            "trainer_log.jsonl", "training_loss.png"} <= set(manifest.files)
    assert not any(name.startswith("checkpoint-") for name in manifest.files)
    assert any(name.startswith("runs/") for name in manifest.files)  # TensorBoard events

    log = read_trainer_log(out)
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert {"step", "total", "loss", "lr", "epoch", "eta", "elapsed"} <= set(log[0])
    progress = json.loads((out / "progress.json").read_text())
    assert progress["step"] == progress["totalSteps"] == 6 and progress["percent"] == 100.0
    assert (out / "checkpoint-4" / COMPLETE_MARKER).is_file()
    assert losses(out)[-1] < losses(out)[0]

    # A second run into a finished output directory is refused (exit 2) rather than mixing two runs.
    assert kubetune_main(["train", str(config), "--no-progress"]) == 2
    assert "already holds a finished artifact" in capsys.readouterr().err


def test_redirected_output_reads_as_a_log(tiny_llama, data_dir, tmp_path):
    """Not a terminal: progress as lines (no redrawn bar), no library deprecation warnings, the last loss as final,
    and `--no-progress` between the file and YAML-1.1-looking overrides."""
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data_dir, eval_strategy="steps", eval_steps=2,
                          val_size=0.25)
    out = run_train(config, "--no-progress", "max_steps=4", "eval_strategy=no")
    assert "\r" not in out and "it/s]" not in out and "example/s]" not in out
    assert "step 4/4 (100.0%)  loss" in out
    assert "Warning:" not in out
    last = losses(tmp_path / "out")[-1]
    assert re.search(rf"done: 4 steps, final loss {last:.4f} \(mean \d+\.\d{{4}}\)", out), out
    assert not any("eval_loss" in r for r in read_trainer_log(tmp_path / "out"))


def test_config_errors_exit_2_with_file_and_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model_name_or_path: m\nstage: sft\nlora_rnak: 8\ndataset: x\noutput_dir: o\n")
    assert kubetune_main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}:3: lora_rnak: unknown key lora_rnak (did you mean lora_rank?)" in err


def test_qlora_on_cpu_is_a_clear_error(tiny_llama, data_dir, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data_dir, quantization_bit=4)
    assert kubetune_main(["train", str(config), "--no-progress"]) == 2
    assert "qlora needs bitsandbytes and a CUDA GPU; use method lora on CPU" in capsys.readouterr().err


def test_pt_stage_packs_text(tiny_llama, data_dir, tmp_path, capsys):
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data_dir, stage="pt", dataset="toy_text",
                          finetuning_type="full", learning_rate=1e-3, cutoff_len=32, max_steps=6, save_steps=100)
    assert kubetune_main(["train", str(config), "--no-progress"]) == 0
    out = tmp_path / "out"
    printed = capsys.readouterr().out
    assert "stage     pt   method full" in printed
    assert "attention sdpa\n" in printed  # packed blocks attend across documents: no padding-free row
    sequences = int(printed.split("data      ")[1].split()[0].replace(",", ""))
    assert sequences < 48  # 48 short documents concatenated and cut into 32-token blocks
    manifest = check_artifact(out, expect_type="full-model")
    assert manifest.stage == "pt" and "model.safetensors" in manifest.files
    saved = yaml.safe_load((out / "kubetune-config.yaml").read_text())
    assert saved["packing"] is True  # the default for pt
    run = losses(out)
    assert len(run) == 6 and run[-1] < run[0]


def test_resume_after_sigkill_ends_with_the_same_steps(tiny_llama, data_dir, tmp_path):
    steps = 96  # a padding-free step takes milliseconds: leave the kill plenty of steps after checkpoint 6
    keys = {"finetuning_type": "full", "learning_rate": 1e-3, "max_steps": steps, "save_steps": 3,
            "save_total_limit": 2, "per_device_train_batch_size": 2}
    straight = write_config(tmp_path / "a" / "cfg.yaml", tiny_llama, data_dir, **keys)
    killed = write_config(tmp_path / "b" / "cfg.yaml", tiny_llama, data_dir, **keys)

    started = time.monotonic()
    run_train(straight, "--no-progress")
    uninterrupted_s = time.monotonic() - started

    proc = train_process(killed, "--no-progress")
    out = tmp_path / "b" / "out"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        checkpoint = last_complete_checkpoint(out)
        with contextlib.suppress(FileNotFoundError):  # rotation may delete it under our feet
            if checkpoint is not None and global_step_of(checkpoint) >= 6:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed: " + proc.stdout.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    survivor = last_complete_checkpoint(out)
    assert survivor is not None
    survivor_step = global_step_of(survivor)
    assert 6 <= survivor_step < steps
    # A checkpoint a crash left half-written (state, no completion marker) must never be resumed from.
    fake = out / f"checkpoint-{steps - 1}"
    fake.mkdir(exist_ok=True)
    (fake / "trainer_state.json").write_text(json.dumps({"global_step": steps - 1}))

    restarted = run_train(killed, "--no-progress")
    resumed_step = int(restarted.split("resuming from checkpoint-")[1].split()[0].rstrip(","))
    assert resumed_step == survivor_step
    assert not fake.exists()  # discarded before training wrote that step again
    assert global_step_of(tmp_path / "a" / "out") == global_step_of(out) == steps
    log_steps = [r["step"] for r in read_trainer_log(out) if "loss" in r]
    assert log_steps == list(range(1, steps + 1))  # one line per step, none twice
    # Same data order and RNG state after resume: the curves agree.
    assert losses(out) == pytest.approx(losses(tmp_path / "a" / "out"), abs=1e-4)
    print(f"\nresume: uninterrupted {uninterrupted_s:.1f}s, killed after checkpoint {survivor_step}, "
          f"resumed from step {resumed_step}, final step {steps}")


def test_ddp_two_processes_match_one(tiny_llama, data_dir, tmp_path):
    """Two gloo processes with batch 2 each see the same global batches as one process with batch 4.

    Tolerance 1e-4 on every logged loss (observed: about 1e-6). Both runs sum the same token losses in float32 but
    in a different order (per-process partial sums, then an all-reduce of losses and gradients) and pad their
    batches to different lengths, so they agree to float32 rounding carried through six optimizer steps, not bit
    for bit; a real divergence (wrong sharding, loss averaged per device instead of per token) is far larger.
    """
    keys = {"max_steps": 6, "save_steps": 100, "dataset": "toy_alpaca,toy_sharegpt", "learning_rate": 5e-3}
    one = write_config(tmp_path / "one" / "cfg.yaml", tiny_llama, data_dir, per_device_train_batch_size=4, **keys)
    two = write_config(tmp_path / "two" / "cfg.yaml", tiny_llama, data_dir, per_device_train_batch_size=2, **keys)
    started = time.monotonic()
    run_train(one, "--no-progress")
    single_s = time.monotonic() - started
    started = time.monotonic()
    printed = run_train(two, "--no-progress", "--nproc-per-node=2")
    ddp_s = time.monotonic() - started
    assert "torch.distributed.run --nproc-per-node=2 --standalone" in printed
    assert "devices   2 x cpu" in printed
    single, ddp = losses(tmp_path / "one" / "out"), losses(tmp_path / "two" / "out")
    assert len(single) == len(ddp) == 6
    diff = max(abs(a - b) for a, b in zip(single, ddp, strict=True))
    print(f"\nddp: single {single_s:.1f}s losses {single}\n"
          f"     2-proc {ddp_s:.1f}s losses {ddp}\n     max diff {diff:.2e}")
    assert diff < 1e-4
    check_artifact(tmp_path / "two" / "out", expect_type="lora-adapter")


def test_llamafactory_example_runs_unchanged(tiny_llama, tmp_path, monkeypatch, capsys):
    """The committed LLaMA-Factory example (one alpaca and one sharegpt dataset in its dataset_info.json) trains
    as written; only the model (a local tiny one), the output directory and the step count are overridden."""
    configs = sorted((ROOT / "examples" / "llamafactory").glob("*sft*.yaml"))
    assert configs, "no LLaMA-Factory sft example under examples/llamafactory"
    monkeypatch.chdir(ROOT)  # LLaMA-Factory resolves dataset_dir against the working directory
    overrides = [f"model_name_or_path={tiny_llama}", f"output_dir={tmp_path / 'out'}", "max_steps=3",
                 "save_steps=100"]
    assert kubetune_main(["train", str(configs[0]), *overrides, "--no-progress"]) == 0, capsys.readouterr().err
    manifest = check_artifact(tmp_path / "out", verify_files=True)
    assert manifest.stage == "sft"


KILL_BEFORE_MANIFEST = """
import os, signal, sys
import kubetune.train.outputs as outputs
# Die during the final save: the last checkpoint is complete and the model is written, the manifest is not.
outputs.write_manifest = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
from kubetune.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_during_the_final_save_resumes_to_exactly_max_steps(tiny_llama, data_dir, tmp_path):
    """max_steps 10 ends mid-epoch (12 batches per epoch) and on a checkpoint (save_steps 5): the resumed run must
    not train an 11th step, and its artifact must equal the uninterrupted run's."""
    from safetensors.torch import load_file

    keys = {"finetuning_type": "full", "learning_rate": 1e-3, "max_steps": 10, "save_steps": 5}
    straight = write_config(tmp_path / "a" / "cfg.yaml", tiny_llama, data_dir, **keys)
    killed = write_config(tmp_path / "b" / "cfg.yaml", tiny_llama, data_dir, **keys)
    run_train(straight, "--no-progress")
    proc = subprocess.run([sys.executable, "-c", KILL_BEFORE_MANIFEST, "train", str(killed), "--no-progress"],
                          capture_output=True, text=True, env=ENV, cwd=ROOT)
    out = tmp_path / "b" / "out"
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert last_complete_checkpoint(out) == out / "checkpoint-10" and not (out / "kubetune-artifact.json").exists()

    printed = run_train(killed, "--no-progress")
    assert "resuming from checkpoint-10" in printed and "done: 10 steps" in printed
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 10
    assert [r["step"] for r in read_trainer_log(out) if "loss" in r] == list(range(1, 11))
    check_artifact(out, expect_type="full-model", verify_files=True)
    resumed, reference = load_file(out / "model.safetensors"), load_file(tmp_path / "a" / "out" / "model.safetensors")
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
