"""Stage grpo end to end on CPU with a tiny Llama: `kubetune train` and `kubetune run` of a FineTuneJob.

The task: prompts ask about a numbered object; the reward is the share of digits in the answer (a function given
by import path, and the same rule behind an HTTP scorer). The stage has learned when answers sampled (seeded) for
held-out prompts earn more reward than the untrained model's.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import torch
import yaml

from kubetune.artifacts import check_artifact
from kubetune.cli.main import main as kubetune_main
from kubetune.data.preference import encode_prompt
from kubetune.data.templates import get_template
from kubetune.train.callbacks import read_trainer_log
from tests.builders import make_finetunejob
from tests.support.scorer import digit_scorer

pytestmark = pytest.mark.slow

TEMPLATE = "chatml"
TRAIN_TOPICS = ["apple", "river", "house", "music", "garden", "winter", "letter", "street"]
HELDOUT_TOPICS = ["forest", "window", "bread", "train", "cloud", "bottle"]
CALLS: list[dict] = []  # what the imported reward was called with


def rows(n: int, topics: list[str], seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"instruction": f"Describe the {topics[i % len(topics)]} number {rng.randint(0, 99)}.",
             "output": str(rng.randint(0, 999))} for i in range(n)]


def digit_share(prompts, completions, answer, **kwargs) -> list[float]:
    """The reward given by import path: the share of digits in each completion."""
    CALLS.append({"prompts": list(prompts), "completions": list(completions), "answer": list(answer)})
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grpodata")
    (root / "train.json").write_text(json.dumps(rows(32, TRAIN_TOPICS, seed=1)))
    (root / "dataset_info.json").write_text(json.dumps({"prompts": {"file_name": "train.json"}}))
    return root


# LoRA plus a fully trained output head and a high learning rate: a random tiny model shifts towards a token class
# within a few GRPO steps only when its output head can move.
GRPO_KEYS = {"stage": "grpo", "finetuning_type": "lora", "lora_rank": 8, "additional_target": "lm_head",
             "dataset": "prompts", "template": TEMPLATE, "cutoff_len": 48, "learning_rate": 1e-2,
             "per_device_train_batch_size": 16, "num_generations": 4, "max_new_tokens": 4, "temperature": 1.0,
             "top_p": 1.0, "top_k": 50, "max_steps": 8, "logging_steps": 1, "save_steps": 100, "report_to": "none",
             "seed": 7, "gradient_checkpointing": False}


def write_config(path: Path, model: Path, data: Path, **keys) -> Path:
    cfg = {"model_name_or_path": str(model), "dataset_dir": str(data), "output_dir": str(path.parent / "out"),
           **GRPO_KEYS, **keys}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def load_policy(base: Path, output: Path | None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    return (PeftModel.from_pretrained(model, output) if output else model).eval()


@torch.no_grad()
def heldout_reward(base: Path, output: Path | None, samples: int = 4) -> float:
    """Mean digit share of answers sampled (seeded) for the held-out prompts."""
    from transformers import AutoTokenizer

    model, tok = load_policy(base, output), AutoTokenizer.from_pretrained(base)
    template = get_template(TEMPLATE)
    torch.manual_seed(0)
    scores = []
    for row in rows(12, HELDOUT_TOPICS, seed=2):
        prompt = encode_prompt({"prompt": [{"role": "user", "content": row["instruction"]}]}, template, tok,
                               48)["prompt_ids"]
        out = model.generate(input_ids=torch.tensor([prompt] * samples), max_new_tokens=4, do_sample=True, top_k=50,
                             top_p=1.0, temperature=1.0, pad_token_id=tok.pad_token_id,
                             eos_token_id=template.stop_token_ids(tok))
        answers = tok.batch_decode(out[:, len(prompt):], skip_special_tokens=True)
        scores += digit_share([], answers, [None] * len(answers))
    return sum(scores) / len(scores)


def test_grpo_raises_heldout_reward(tiny_llama, data_dir, tmp_path):
    CALLS.clear()
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data_dir,
                          reward_funcs="tests.integration.test_grpo_stage:digit_share,exact_match",
                          reward_weights="1.0,0.0")
    started = time.monotonic()
    assert kubetune_main(["train", str(config), "--no-progress"]) == 0
    seconds = time.monotonic() - started
    out = tmp_path / "out"

    # The reward saw each prompt's group of 4 completions with the dataset's answer, prompts in kubetune's template.
    train_answers = {r["output"] for r in rows(32, TRAIN_TOPICS, seed=1)}
    assert len(CALLS) == 8 and all(len(c["completions"]) == 16 for c in CALLS)
    first = CALLS[0]
    assert set(first["answer"]) <= train_answers and first["answer"][:4] == [first["answer"][0]] * 4
    assert first["prompts"][0].startswith("<|im_start|>user\nDescribe the ")
    assert first["prompts"][0].endswith("<|im_end|>\n<|im_start|>assistant\n")

    log = [r for r in read_trainer_log(out) if "loss" in r]
    assert [r["step"] for r in log] == list(range(1, 9))
    assert {"reward", "reward_std", "rewards/digit_share/mean", "rewards/exact_match/mean"} <= set(log[-1])
    manifest = check_artifact(out, expect_type="lora-adapter", verify_files=True)
    assert manifest.stage == "grpo"

    before, after = heldout_reward(tiny_llama, None), heldout_reward(tiny_llama, out)
    train_first, train_last = log[0]["reward"], sum(r["reward"] for r in log[-3:]) / 3
    figures = (f"held-out mean reward {before:.2f} -> {after:.2f}; training reward {train_first:.2f} -> "
               f"{train_last:.2f} (8 steps, {seconds:.0f}s)")
    print("grpo:", figures)
    assert after > before + 0.1, figures


def test_grpo_finetunejob_with_an_http_scorer_runs_locally(tiny_llama, data_dir, tmp_path):
    """`kubetune run` of a FineTuneJob with spec.grpo: the HTTP scorer is asked about every completion."""
    with digit_scorer() as scorer:
        run_grpo_job(scorer.url, tiny_llama, data_dir, tmp_path)
    seen = scorer.seen
    assert len(seen) == 2 * 8
    assert [m["role"] for m in seen[0]["messages"]] == ["user", "assistant"]
    assert seen[0]["messages"][0]["content"].startswith("Describe the ")
    outputs = list((tmp_path / "models").glob("grpo-*"))
    assert len(outputs) == 1 and check_artifact(outputs[0], expect_type="lora-adapter").stage == "grpo"


def run_grpo_job(url: str, tiny_llama: Path, data_dir: Path, tmp_path: Path) -> None:
    """`kubetune run` a GRPO FineTuneJob whose rewards come from ``url``."""
    job = make_finetunejob(
        "grpo", stage="grpo", model={"uri": f"file://{tiny_llama}", "template": TEMPLATE},
        datasets=[{"uri": f"file://{data_dir / 'train.json'}", "format": "alpaca"}],
        lora={"rank": 4}, grpo={"rewards": [url], "numGenerations": 4, "maxNewTokens": 4},
        training={"maxSteps": 2, "learningRate": 1e-3, "perDeviceBatchSize": 8, "gradientAccumulationSteps": 1,
                  "cutoffLen": 48, "loggingSteps": 1, "gradientCheckpointing": False},
        output={"uri": f"file://{tmp_path / 'models'}/"},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    assert kubetune_main(["run", str(path), "--work-dir", str(tmp_path / "w"), "--no-progress"]) == 0


def test_bad_grpo_configs_exit_2(tiny_llama, data_dir, tmp_path, capsys):
    bad = write_config(tmp_path / "a" / "cfg.yaml", tiny_llama, data_dir, reward_funcs="no_such_module_xyz:score")
    assert kubetune_main(["train", str(bad), "--no-progress"]) == 2
    assert "reward_funcs[0]: cannot import module 'no_such_module_xyz'" in capsys.readouterr().err
    bad = write_config(tmp_path / "b" / "cfg.yaml", tiny_llama, data_dir, reward_funcs="exact_match",
                       num_generations=3)
    assert kubetune_main(["train", str(bad), "--no-progress"]) == 2
    assert "must be a multiple of num_generations (3)" in capsys.readouterr().err
