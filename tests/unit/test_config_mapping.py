"""FineTuneJob <-> RuntimeConfig: one mapping each way, checked by round trips on representative configs."""

from __future__ import annotations

import pytest
import yaml

from kubetune.api.finetunejob import FineTuneJob
from kubetune.config import ConfigError, RuntimeConfig, config_from_flat, dump_config
from kubetune.config.mapping.train import finetunejob_from_runtime_config, runtime_config_from_finetunejob
from kubetune.uris import uri_to_path
from tests.builders import make_finetunejob


def resolve(uri: str) -> str:
    """pvc://claim/path is mounted at /mnt/claim/path; file:// and hf:// resolve as for local runs."""
    return "/mnt/" + uri.removeprefix("pvc://") if uri.startswith("pvc://") else uri_to_path(uri)


def to_config(body: dict, output_dir: str = "/out/run-1") -> RuntimeConfig:
    return runtime_config_from_finetunejob(FineTuneJob.model_validate(body), output_dir=output_dir, resolve=resolve)


def test_finetunejob_maps_onto_runtime_keys():
    body = make_finetunejob(
        name="support", stage="dpo", method="qlora",
        model={"uri": "pvc://models/qwen", "template": "qwen"},
        datasets=[{"uri": "pvc://data/prefs.jsonl", "format": "sharegpt", "ranking": True,
                   "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}],
        lora={"rank": 16, "alpha": 32, "dropout": 0.05, "target": ["q_proj", "v_proj"]},
        preference={"beta": 0.2, "loss": "sigmoid"},
        training={"epochs": 2, "learningRate": 5e-6, "cutoffLen": 1024, "valSize": 0.1, "evalSteps": 50,
                  "precision": "bf16"},
        distributed={"strategy": "deepspeed", "zeroStage": 3},
        extraArgs={"neftune_noise_alpha": 5},
    )
    body["metadata"] = {"name": "support", "namespace": "team-a", "uid": "1234"}
    cfg = to_config(body)
    assert cfg.stage == "dpo" and cfg.model.model_name_or_path == "/mnt/models/qwen"
    assert cfg.method.finetuning_type == "qlora" and cfg.method.quantization_bit == 4
    assert cfg.method.lora_target == ["q_proj", "v_proj"] and cfg.preference.pref_beta == 0.2
    assert cfg.data.template == "qwen" and cfg.data.dataset == ["prefs"]
    entry = cfg.data.dataset_info["prefs"]
    assert entry.file_name == "/mnt/data/prefs.jsonl" and entry.formatting == "sharegpt" and entry.ranking
    assert entry.columns.chosen == "chosen"
    assert cfg.training.output_dir == "/out/run-1" and cfg.training.bf16 and cfg.training.eval_strategy == "steps"
    assert cfg.training.model_extra == {"neftune_noise_alpha": 5}
    assert cfg.distributed.deepspeed == "ds_z3" and cfg.run.resume == "auto"
    assert (cfg.run.created_by_name, cfg.run.created_by_namespace, cfg.run.base_model_uri) == \
        ("support", "team-a", "pvc://models/qwen")


def test_extra_args_are_validated_as_runtime_keys():
    with pytest.raises(ConfigError) as info:
        to_config(make_finetunejob(extraArgs={"neftune_noise_alpa": 5}))
    (err,) = info.value.errors
    assert err.path == "spec.extraArgs.neftune_noise_alpa" and "did you mean neftune_noise_alpha?" in err.message
    with pytest.raises(ConfigError, match=r"spec\.extraArgs\.learning_rate: learning_rate is already set by the spec"):
        to_config(make_finetunejob(extraArgs={"learning_rate": 1e-3}))
    with pytest.raises(ConfigError, match="use_muon is not supported"):
        to_config(make_finetunejob(extraArgs={"use_muon": True}))


def test_references_need_resolving():
    body = make_finetunejob(model={"uri": None, "fineTuneJobRef": {"name": "base-sft"}})
    with pytest.raises(ConfigError, match="references must be resolved"):
        to_config(body)
    cfg = runtime_config_from_finetunejob(FineTuneJob.model_validate(body), output_dir="/o", resolve=resolve,
                                          resolve_ref=lambda kind, name: f"pvc://models/{name}-abcd1234")
    assert cfg.model.model_name_or_path == "/mnt/models/base-sft-abcd1234"


BASE = {"model_name_or_path": "/models/tiny", "output_dir": "/out/x", "dataset": "alpaca", "dataset_dir": "/data"}
CONFIGS = {
    "sft-lora-registry": {**BASE, "lora_rank": 16, "lora_target": "q_proj,v_proj", "template": "llama3",
                          "neat_packing": True, "learning_rate": 2e-4, "neftune_noise_alpha": 5},
    "sft-inline-datasets": {**BASE, "dataset": "chat,extra", "dataset_info": {
        "chat": {"file_name": "/data/chat.jsonl", "formatting": "sharegpt", "tags": {"role_tag": "role"}},
        "extra": {"hf_hub_url": "org/extra", "num_samples": 100}},
        "mix_strategy": "interleave_under", "interleave_probs": "0.7,0.3", "max_steps": 100},
    "dpo-qlora-zero3": {**BASE, "stage": "dpo", "quantization_bit": 4, "pref_loss": "simpo", "simpo_gamma": 1.0,
                        "deepspeed": "ds_z3_offload", "bf16": True, "val_size": 0.1, "eval_strategy": "steps",
                        "eval_steps": 20},
    "kto-freeze": {**BASE, "stage": "kto", "finetuning_type": "freeze", "freeze_trainable_layers": -2,
                   "kto_chosen_weight": 2.0, "pref_ftx": 0.1, "fsdp": "full_shard auto_wrap"},
    "ppo-full": {**BASE, "stage": "ppo", "finetuning_type": "full", "reward_model": "/models/rm",
                 "reward_model_type": "full", "ppo_kl_coef": 0.1, "max_new_tokens": 64, "top_p": 0.9},
    "ppo-lora-http": {**BASE, "stage": "ppo", "reward_model": "http://scorer:8000/score", "reward_model_type": "api",
                      "ppo_buffer_size": 2, "ppo_epochs": 2, "ppo_target": 6.0, "ppo_whiten_rewards": True,
                      "ppo_score_norm": True, "max_new_tokens": 32},
    "grpo-rewards": {**BASE, "stage": "grpo", "reward_funcs": "exact_match,format,http://scorer:8000/score",
                     "reward_weights": "1.0,0.5,2.0", "reward_format_pattern": r"<answer>\d+</answer>",
                     "num_generations": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                     "beta": 0.04, "loss_type": "dr_grpo", "scale_rewards": "batch", "max_new_tokens": 64},
    "grpo-flat-defaults": {**BASE, "stage": "grpo", "reward_funcs": "my_rewards.score:accuracy"},
    "dpo-orpo-ftx": {**BASE, "stage": "dpo", "pref_loss": "orpo", "pref_beta": 0.2, "pref_ftx": 0.5},
    "dpo-sigmoid-ref": {**BASE, "stage": "dpo", "finetuning_type": "full", "ref_model": "/models/ref",
                        "dpo_label_smoothing": 0.1},
    "rm-lora-api": {**BASE, "stage": "rm", "save_total_limit": 2, "resume": "never", "eval_strategy": "epoch",
                    "val_size": 0.05},
    "pt-full-fsdp": {**BASE, "stage": "pt", "finetuning_type": "full", "fsdp": "full_shard auto_wrap offload",
                     "cutoff_len": 512, "precision": "auto", "lr_scheduler_type": "constant"},
}


@pytest.mark.parametrize("flat", CONFIGS.values(), ids=CONFIGS.keys())
def test_config_to_finetunejob_and_back(flat):
    cfg = config_from_flat(flat)
    job = finetunejob_from_runtime_config(cfg, "round-trip")
    # What kubectl would store: the job survives serialisation and CR validation.
    job = FineTuneJob.model_validate(yaml.safe_load(yaml.safe_dump(job.wire())))
    again = runtime_config_from_finetunejob(job, output_dir=cfg.training.output_dir, resolve=uri_to_path)
    assert again.run.created_by_name == "round-trip"
    run_keys = {"created_by_kind", "created_by_name", "base_model_uri", "base_model_revision"}
    expected = dump_config(cfg)
    # Two documented losses: the spec cannot say "keep every checkpoint" (its default is 3), and datasets given
    # inline carry absolute file names, so dataset_dir no longer matters.
    expected.setdefault("save_total_limit", 3)
    if "dataset_dir" in flat and "dataset_info" in flat:
        expected["dataset_dir"] = "data"
    assert {k: v for k, v in dump_config(again).items() if k not in run_keys} == expected


@pytest.mark.parametrize("stage", ["pt", "sft", "rm", "ppo", "dpo", "kto", "grpo"])
@pytest.mark.parametrize("method", ["full", "freeze", "lora", "qlora"])
def test_finetunejob_to_config_and_back(stage, method):
    body = make_finetunejob(stage=stage, method=method, training={"epochs": 1, "cutoffLen": 256, "seed": 7})
    if stage == "ppo" and method in ("full", "freeze"):
        body["spec"]["ppo"]["rewardModel"] = {"url": "http://scorer:8000/score"}
    cfg = to_config(body)
    job = finetunejob_from_runtime_config(cfg, "ftj")
    assert job.spec.stage == stage and job.spec.method == method
    assert job.spec.training.epochs == 1 and job.spec.training.cutoff_len == 256
    assert to_config(job.wire(), cfg.training.output_dir).model_dump() == \
        cfg.model_copy(update={"run": cfg.run.model_copy(update={"created_by_uid": None})}).model_dump()


def test_convert_command_prints_a_valid_finetunejob(tmp_path, capsys, monkeypatch):
    from kubetune.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "qwen_lora_sft.yaml").write_text(yaml.safe_dump({
        "model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "stage": "sft", "finetuning_type": "lora",
        "dataset": "identity", "template": "qwen", "output_dir": "saves/sft", "neftune_noise_alpha": 5}))
    assert main(["convert", "qwen_lora_sft.yaml", "lora_rank=4", "--namespace", "team-a"]) == 0
    job = FineTuneJob.model_validate(yaml.safe_load(capsys.readouterr().out))
    assert job.metadata == {"name": "qwen-lora-sft", "namespace": "team-a"}
    assert job.spec.model.uri == "hf://Qwen/Qwen2.5-0.5B-Instruct" and job.spec.lora.rank == 4
    assert job.spec.datasets[0].name == "identity" and job.spec.datasets[0].registry_uri == f"file://{tmp_path}/data"
    assert job.spec.output.uri == f"file://{tmp_path}/saves/sft/" and job.spec.extra_args == {"neftune_noise_alpha": 5}
    assert main(["convert", "qwen_lora_sft.yaml", "lora_rnak=4"]) == 2
    assert "did you mean lora_rank?" in capsys.readouterr().err


def test_ppo_reward_model_reference_resolves_to_its_output():
    reward = {"uri": None, "fineTuneJobRef": {"name": "rm-run"}}
    body = make_finetunejob(stage="ppo", ppo={"rewardModel": reward, "bufferSize": 2, "targetKl": 6.0, "klCoef": 0.1})
    cfg = runtime_config_from_finetunejob(FineTuneJob.model_validate(body), output_dir="/o", resolve=resolve,
                                          resolve_ref=lambda kind, name: f"pvc://models/{name}-abcd1234")
    pref = cfg.preference
    assert (pref.reward_model, pref.reward_model_type) == ("/mnt/models/rm-run-abcd1234", "full")
    assert (pref.ppo_buffer_size, pref.ppo_target, pref.ppo_kl_coef) == (2, 6.0, 0.1)
    http = make_finetunejob(stage="ppo", ppo={"rewardModel": {"uri": None, "url": "http://scorer:8000/score"}})
    cfg = to_config(http)
    assert (cfg.preference.reward_model, cfg.preference.reward_model_type) == ("http://scorer:8000/score", "api")
