"""Preference stages end to end through `kubetune train` on CPU with a tiny Llama, judged on held-out data.

The synthetic task: every prompt asks about a numbered object; the chosen answer is three numbers, the rejected
answer three words. Held-out pairs use other objects, numbers and word draws. A stage has learned when, on the
held-out pairs, the reward model ranks chosen above rejected (rm), the policy's log-probability margin
chosen - rejected grows (dpo family, kto), or sampled answers to held-out prompts earn more reward (ppo).
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
from kubetune.data.preference import encode_pair, encode_prompt
from kubetune.data.templates import get_template
from kubetune.train import score
from kubetune.train.callbacks import read_trainer_log
from tests.support.scorer import digit_scorer, digit_share

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["good", "great", "fine", "nice", "kind", "calm", "warm", "bright", "bad", "awful", "poor", "rude"]
TRAIN_TOPICS = ["apple", "river", "house", "music", "garden", "winter", "letter", "street"]
HELDOUT_TOPICS = ["forest", "window", "bread", "train", "cloud", "bottle"]
TEMPLATE = "chatml"
FIGURES: dict[str, str] = {}


def pairs(n: int, topics: list[str], seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"instruction": f"Describe the {topics[i % len(topics)]} number {rng.randint(0, 99)}.", "input": "",
             "chosen": " ".join(str(rng.randint(0, 999)) for _ in range(3)),
             "rejected": " ".join(rng.choice(WORDS) for _ in range(3))} for i in range(n)]


def kto_rows(rows: list[dict[str, str]]) -> list[dict[str, object]]:
    return [{"instruction": r["instruction"], "input": "", "output": r[side], "desirable": side == "chosen"}
            for r in rows for side in ("chosen", "rejected")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prefdata")
    train = pairs(48, TRAIN_TOPICS, seed=1)
    (root / "pairs.json").write_text(json.dumps(train))
    (root / "heldout.json").write_text(json.dumps(pairs(16, HELDOUT_TOPICS, seed=2)))
    (root / "kto.json").write_text(json.dumps(kto_rows(train[:24])))
    (root / "dataset_info.json").write_text(json.dumps({
        "pairs": {"file_name": "pairs.json", "ranking": True},
        "kto": {"file_name": "kto.json", "columns": {"kto_tag": "desirable"}},
        "kto_untagged": {"file_name": "kto.json"},
    }))
    return root


def heldout(data_dir: Path) -> list[dict]:
    """Held-out pairs as conversational rows (the shape build_datasets gives the stages)."""
    return [{"prompt": [{"role": "user", "content": r["instruction"]}], "system": None, "tools": None,
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]}
            for r in json.loads((data_dir / "heldout.json").read_text())]


def write_config(path: Path, model: Path, data: Path, **keys) -> Path:
    cfg = {"model_name_or_path": str(model), "stage": "dpo", "finetuning_type": "lora", "lora_rank": 8,
           "dataset": "pairs", "dataset_dir": str(data), "template": TEMPLATE, "cutoff_len": 48,
           "output_dir": str(path.parent / "out"), "per_device_train_batch_size": 8, "learning_rate": 5e-3,
           "max_steps": 6, "logging_steps": 1, "save_steps": 100, "report_to": "none", "seed": 7,
           "gradient_checkpointing": False, **keys}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def step_records(output: Path) -> list[dict]:
    """trainer_log.jsonl lines of training steps (the final summary line left out)."""
    return [r for r in read_trainer_log(output) if "loss" in r]


def train(config: Path, *overrides: str) -> float:
    started = time.monotonic()
    assert kubetune_main(["train", str(config), *overrides, "--no-progress"]) == 0
    return time.monotonic() - started


def load_policy(base: Path, output: Path | None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if output is None:
        return AutoModelForCausalLM.from_pretrained(base).eval()
    if (output / "adapter_config.json").is_file():
        return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), output).eval()
    return AutoModelForCausalLM.from_pretrained(output).eval()


@torch.no_grad()
def logp_margin(base: Path, output: Path | None, rows: list[dict]) -> float:
    """Mean over held-out pairs of log π(chosen) - log π(rejected), summed over the answer tokens."""
    from transformers import AutoTokenizer

    model, tok = load_policy(base, output), AutoTokenizer.from_pretrained(base)
    template = get_template(TEMPLATE)

    def logp(prompt: list[int], answer: list[int]) -> float:
        ids = torch.tensor([prompt + answer])
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].log_softmax(-1)
        return float(logits.gather(-1, torch.tensor(answer)[:, None]).sum())

    margins = []
    for row in rows:
        enc = encode_pair(row, template, tok, 48)
        margins.append(logp(enc["prompt_ids"], enc["chosen_ids"]) - logp(enc["prompt_ids"], enc["rejected_ids"]))
    return sum(margins) / len(margins)


def conversations(rows: list[dict], side: str) -> list[dict]:
    return [{"messages": r["prompt"] + r[side]} for r in rows]


def rm_accuracy(reward_dir: Path, rows: list[dict], base: Path | None = None) -> tuple[float, float]:
    chosen = score(reward_dir, conversations(rows, "chosen"), base_model=str(base) if base else None,
                   template=TEMPLATE)
    rejected = score(reward_dir, conversations(rows, "rejected"), base_model=str(base) if base else None,
                     template=TEMPLATE)
    accuracy = sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(rows)
    return accuracy, sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(rows)


@pytest.fixture(scope="module")
def reward_model(tiny_llama, data_dir, tmp_path_factory) -> Path:
    """A LoRA reward model trained by stage rm (used by the rm test and as PPO's reward model)."""
    config = write_config(tmp_path_factory.mktemp("rm") / "cfg.yaml", tiny_llama, data_dir, stage="rm",
                          max_steps=12, save_steps=6)
    FIGURES["rm_seconds"] = f"{train(config):.1f}"
    return config.parent / "out"


def test_rm_ranks_heldout_pairs(tiny_llama, data_dir, reward_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    rows = heldout(data_dir)
    # The starting point: the base with the same freshly initialised score head the run began with.
    start = reward_model.parent / "start"
    set_seed(7)
    AutoModelForSequenceClassification.from_pretrained(tiny_llama, num_labels=1).save_pretrained(start)
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(start)
    before = rm_accuracy(start, rows)
    after = rm_accuracy(reward_model, rows)
    FIGURES["rm"] = f"held-out accuracy {before[0]:.2f} -> {after[0]:.2f}, margin {before[1]:.2f} -> {after[1]:.2f}"
    assert after[0] >= 0.9 and after[1] > before[1] + 1.0, FIGURES["rm"]

    manifest = check_artifact(reward_model, expect_type="lora-adapter", verify_files=True)
    assert manifest.stage == "rm"
    config = json.loads((reward_model / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]
    log = step_records(reward_model)
    assert {"accuracy", "margin"} <= set(log[-1]) and (reward_model / "training_loss.png").is_file()


DPO_CASES = {
    "sigmoid": {"pref_loss": "sigmoid", "pref_ftx": 0.1},
    "sigmoid-smoothed": {"pref_loss": "sigmoid", "dpo_label_smoothing": 0.1},
    "hinge": {"pref_loss": "hinge"},
    "ipo-full": {"pref_loss": "ipo", "finetuning_type": "full", "learning_rate": 1e-3},
    "orpo": {"pref_loss": "orpo", "pref_beta": 2.0, "learning_rate": 1e-2},
    "simpo": {"pref_loss": "simpo", "pref_beta": 2.0, "simpo_gamma": 0.5},
}


@pytest.mark.parametrize("case", DPO_CASES.values(), ids=DPO_CASES.keys())
def test_dpo_family_raises_heldout_margin(case, tiny_llama, data_dir, tmp_path):
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data_dir, **case)
    seconds = train(config)
    out = tmp_path / "out"
    rows = heldout(data_dir)
    before, after = logp_margin(tiny_llama, None, rows), logp_margin(tiny_llama, out, rows)
    FIGURES[f"dpo {case['pref_loss']} {case}"] = f"held-out logp margin {before:.2f} -> {after:.2f} ({seconds:.0f}s)"
    assert after > before + 1.0, (before, after)
    log = step_records(out)
    assert [r["step"] for r in log] == list(range(1, 7))
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(log[-1])
    manifest = check_artifact(out, verify_files=True)
    assert manifest.stage == "dpo" and not any(f.startswith("ref/") for f in manifest.files)  # no reference copy


def test_kto_raises_heldout_margin(tiny_llama, data_dir, tmp_path):
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data_dir, stage="kto", dataset="kto",
                          kto_chosen_weight=1.0, kto_rejected_weight=1.0, pref_beta=1.0, pref_ftx=0.1,
                          max_steps=8, learning_rate=1e-2)
    seconds = train(config)
    rows = heldout(data_dir)
    before, after = logp_margin(tiny_llama, None, rows), logp_margin(tiny_llama, tmp_path / "out", rows)
    FIGURES["kto"] = f"held-out logp margin {before:.2f} -> {after:.2f} ({seconds:.0f}s)"
    assert after > before + 1.0, (before, after)
    log = step_records(tmp_path / "out")
    assert {"kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "nll_loss"} <= set(log[-1])


@torch.no_grad()
def sampled_answers(base: Path, output: Path | None, rows: list[dict], samples: int = 4) -> list[dict]:
    """Conversations with answers sampled (seeded) for held-out prompts, as PPO samples them."""
    from transformers import AutoTokenizer

    model, tok = load_policy(base, output), AutoTokenizer.from_pretrained(base)
    template = get_template(TEMPLATE)
    torch.manual_seed(0)
    convs = []
    for row in rows:
        prompt = encode_prompt(row, template, tok, 48)["prompt_ids"]
        out = model.generate(input_ids=torch.tensor([prompt] * samples), max_new_tokens=4, do_sample=True,
                             top_k=50, top_p=1.0, temperature=1.0, pad_token_id=tok.pad_token_id,
                             eos_token_id=template.stop_token_ids(tok))
        for answer in tok.batch_decode(out[:, len(prompt):], skip_special_tokens=True):
            convs.append({"messages": row["prompt"] + [{"role": "assistant", "content": answer.strip()}]})
    return convs


@pytest.fixture
def scorer():
    with digit_scorer() as running:
        yield running


# LoRA plus a fully trained output head: a random tiny model moves towards a token class in a dozen PPO steps
# only when its output head can move (with plain LoRA the held-out reward barely changes in that budget).
PPO_KEYS = {"stage": "ppo", "learning_rate": 1e-2, "ppo_epochs": 4, "per_device_train_batch_size": 16,
            "max_new_tokens": 4, "top_p": 1.0, "temperature": 1.0, "additional_target": "lm_head"}


def test_ppo_raises_heldout_reward_and_resumes(tiny_llama, data_dir, tmp_path, scorer):
    """PPO against an HTTP scorer: 6 steps, then the finished run is continued to 12 from its checkpoint
    (weights, value head, optimizer, KL state), and held-out prompts earn more reward than before."""
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data_dir, reward_model=scorer.url,
                          reward_model_type="api", max_steps=6, save_steps=3, **PPO_KEYS)
    seconds = train(config)
    out = tmp_path / "out"
    assert len(scorer.seen) == 6 * 16 and scorer.seen[0]["messages"][0]["role"] == "user"
    assert (out / "checkpoint-6" / "value_head.safetensors").is_file()
    (out / "kubetune-artifact.json").unlink()  # continue the finished run rather than start over
    seconds += train(config, "max_steps=12")
    assert len(scorer.seen) == 12 * 16

    log = step_records(out)
    assert [r["step"] for r in log] == list(range(1, 13))
    assert {"reward", "kl", "kl_coef", "policy_loss", "value_loss"} <= set(log[-1])
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # the first rollout is scored against an identical policy
    manifest = check_artifact(out, expect_type="lora-adapter", verify_files=True)
    assert manifest.stage == "ppo" and not any("value_head" in f for f in manifest.files)

    rows = heldout(data_dir)
    before = [digit_share(c["messages"][-1]["content"]) for c in sampled_answers(tiny_llama, None, rows)]
    after = [digit_share(c["messages"][-1]["content"]) for c in sampled_answers(tiny_llama, out, rows)]
    before_mean, after_mean = sum(before) / len(before), sum(after) / len(after)
    train_first, train_last = log[0]["reward"], sum(r["reward"] for r in log[-3:]) / 3
    FIGURES["ppo (http scorer)"] = (f"held-out mean reward {before_mean:.2f} -> {after_mean:.2f}; training reward "
                                    f"{train_first:.2f} -> {train_last:.2f} (12 steps, {seconds:.0f}s)")
    assert after_mean > before_mean + 0.1, FIGURES["ppo (http scorer)"]


def test_ppo_with_a_kubetune_reward_model(tiny_llama, data_dir, reward_model, tmp_path):
    """PPO scored by the LoRA reward adapter stage rm wrote, applied to the policy's base model."""
    config = write_config(tmp_path / "cfg.yaml", tiny_llama, data_dir, reward_model=str(reward_model),
                          reward_model_type="lora", max_steps=3, **{**PPO_KEYS, "per_device_train_batch_size": 8})
    seconds = train(config)
    log = step_records(tmp_path / "out")
    rows = heldout(data_dir)
    rewards = score(reward_model, sampled_answers(tiny_llama, tmp_path / "out", rows, samples=1),
                    base_model=str(tiny_llama), template=TEMPLATE)
    FIGURES["ppo (kubetune rm)"] = (f"training reward {log[0]['reward']:.2f} -> {log[-1]['reward']:.2f}, held-out "
                                    f"{sum(rewards) / len(rewards):.2f} (3 steps, {seconds:.0f}s)")
    assert [r["step"] for r in log] == [1, 2, 3] and log[0]["kl"] == pytest.approx(0.0, abs=1e-4)
    assert all(isinstance(r["reward"], float) for r in log)
    check_artifact(tmp_path / "out", expect_type="lora-adapter")


def test_reference_logps_computed_once_train_like_per_step(tiny_llama, data_dir, tmp_path, monkeypatch, capsys):
    """A run that covers every pair computes the reference log-probs once, up front; the losses, rewards and the
    trained adapter are those of a run computing them with a reference forward at every step."""
    from safetensors.torch import load_file

    from kubetune.train import dpo

    once = write_config(tmp_path / "once" / "cfg.yaml", tiny_llama, data_dir, max_steps=12)  # every pair twice
    train(once)
    assert "reference log-probs of 48 pairs computed once" in capsys.readouterr().out
    monkeypatch.setattr(dpo, "reference_once", lambda args, pairs: False)
    per_step = write_config(tmp_path / "per_step" / "cfg.yaml", tiny_llama, data_dir, max_steps=12)
    train(per_step)
    assert "computed once" not in capsys.readouterr().out
    a, b = step_records(tmp_path / "once" / "out"), step_records(tmp_path / "per_step" / "out")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen"):
            assert ra[key] == pytest.approx(rb[key], abs=2e-5), (ra["step"], key)
    assert a[-1]["rewards/margins"] != pytest.approx(a[0]["rewards/margins"], abs=1e-4)  # it did learn
    wa = load_file(tmp_path / "once" / "out" / "adapter_model.safetensors")
    wb = load_file(tmp_path / "per_step" / "out" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for name, tensor in wa.items():
        torch.testing.assert_close(tensor, wb[name], atol=2e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize(("max_steps", "epochs", "expected"), [(6, 1.0, False), (12, 1.0, True), (11, 3.0, False),
                                                               (-1, 2.0, True), (-1, 1.0, False)])
def test_reference_once_when_the_run_covers_every_pair_twice(max_steps, epochs, expected):
    from types import SimpleNamespace

    from kubetune.train.dpo import reference_once

    args = SimpleNamespace(max_steps=max_steps, num_train_epochs=epochs, per_device_train_batch_size=4,
                           gradient_accumulation_steps=2, world_size=1)
    assert reference_once(args, pairs=48) is expected


def test_llamafactory_dpo_example_runs_unchanged(tiny_llama, tmp_path, monkeypatch, capsys):
    """examples/llamafactory/dpo_lora.yaml (stage dpo, pref_beta, pref_loss, a ranking dataset) trains as
    written; only the model, the output directory and the step count are overridden."""
    monkeypatch.chdir(ROOT)
    overrides = [f"model_name_or_path={tiny_llama}", f"output_dir={tmp_path / 'out'}", "max_steps=2"]
    assert kubetune_main(["train", "examples/llamafactory/dpo_lora.yaml", *overrides, "--no-progress"]) == 0, \
        capsys.readouterr().err
    manifest = check_artifact(tmp_path / "out", verify_files=True)
    assert manifest.stage == "dpo"
    assert "rewards/margins" in step_records(tmp_path / "out")[-1]


def test_configs_that_cannot_work_exit_2_naming_the_key(tiny_llama, data_dir, tmp_path, capsys):
    untagged = write_config(tmp_path / "kto.yaml", tiny_llama, data_dir, stage="kto", dataset="kto_untagged")
    assert kubetune_main(["train", str(untagged), "--no-progress"]) == 2
    err = capsys.readouterr().err  # checked before the model loads, located at the dataset file and row
    assert "kto.json:row 1: stage kto needs a kto_tag column" in err and str(untagged) in err
    not_a_reward_model = write_config(tmp_path / "ppo.yaml", tiny_llama, data_dir, stage="ppo",
                                      reward_model=str(tiny_llama), reward_model_type="full")
    assert kubetune_main(["train", str(not_a_reward_model), "--no-progress"]) == 2
    assert f"reward_model: {tiny_llama} is not a reward model" in capsys.readouterr().err


def test_zz_report_figures():
    """Prints what the stages achieved (run with -s to see it)."""
    print("\n" + "\n".join(f"{k}: {v}" for k, v in FIGURES.items()))
