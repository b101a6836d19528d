"""Runtime config: LLaMA-Factory keys load into typed groups; bad keys are reported with file, line and a hint."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from kubetune.api.documents import validate_file
from kubetune.config import ConfigError, RuntimeConfig, dump_config, load_config
from kubetune.config.hf_keys import HF_TRAINING_KEYS
from kubetune.config.keys import KEY_GROUP, UNSUPPORTED, known_keys

LF_YAML = """\
### model
model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 16
lora_target: q_proj,v_proj

### dataset
dataset: identity,alpaca_en_demo
template: qwen
cutoff_len: 1024
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16

### output
output_dir: saves/qwen/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
deepspeed: ds_z3
"""


def write(tmp_path, text: str, name: str = "cfg.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_llamafactory_yaml_is_split_into_groups(tmp_path):
    cfg = load_config(write(tmp_path, LF_YAML))
    assert cfg.stage == "sft"
    assert cfg.model.model_name_or_path == "Qwen/Qwen2.5-0.5B-Instruct" and cfg.model.trust_remote_code
    assert cfg.method.lora_target == ["q_proj", "v_proj"] and cfg.method.lora_alpha == 32  # 2 x rank
    assert cfg.data.dataset == ["identity", "alpaca_en_demo"] and cfg.data.cutoff_len == 1024
    assert cfg.data.packing is False  # sft default
    assert cfg.training.learning_rate == 1e-4 and cfg.training.model_extra == {"do_train": True}
    assert cfg.distributed.strategy == "deepspeed" and cfg.distributed.deepspeed_preset == (3, False)
    hf = cfg.training.hf_kwargs()
    assert hf["warmup_steps"] == 0.1 and "warmup_ratio" not in hf and "overwrite_output_dir" not in hf
    assert set(hf) <= HF_TRAINING_KEYS


def test_unknown_key_names_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, LF_YAML.replace("lora_rank: 16", "lora_rnak: 16"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (err,) = info.value.errors
    assert (err.file, err.line, err.path) == (str(path), 9, "lora_rnak")
    assert "unknown key lora_rnak (did you mean lora_rank?)" in str(err)


def test_unsupported_llamafactory_keys_are_listed(tmp_path):
    path = write(tmp_path, LF_YAML + "use_muon: true\nswanlab_project: p\nuse_unsloth: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    messages = [str(e) for e in info.value.errors]
    assert any("use_muon is not supported by kubetune (this optimizer)" in m for m in messages)
    assert any("swanlab_project is not supported" in m for m in messages)
    assert any("keys not supported by kubetune: use_muon, swanlab_project, use_unsloth" in m for m in messages)


def test_keys_taken_at_one_value_refuse_others(tmp_path):
    path = write(tmp_path, LF_YAML + "infer_backend: vllm\nlow_cpu_mem_usage: false\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    by_key = {e.path: str(e) for e in info.value.errors}
    assert set(by_key) == {"infer_backend", "low_cpu_mem_usage"}
    assert "infer_backend: kubetune accepts only 'huggingface' (got 'vllm')" in by_key["infer_backend"]
    assert "serve or export config" in by_key["infer_backend"]


def test_invalid_value_and_cross_field_rules_name_the_key(tmp_path):
    path = write(tmp_path, LF_YAML.replace("finetuning_type: lora", "finetuning_type: oft")
                 .replace("stage: sft", "stage: dpo") + "train_on_prompt: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    by_key = {e.path: e for e in info.value.errors}
    assert by_key["finetuning_type"].line == 8 and "oft" in by_key["finetuning_type"].message


def test_stage_rules(tmp_path):
    base = LF_YAML.replace("stage: sft", "stage: dpo")
    with pytest.raises(ConfigError, match="train_on_prompt only apply to stage sft"):
        load_config(write(tmp_path, base + "train_on_prompt: true\n"))
    with pytest.raises(ConfigError, match="ref_model cannot be used with pref_loss orpo"):
        load_config(write(tmp_path, base + "pref_loss: orpo\nref_model: some/model\n"))
    with pytest.raises(ConfigError, match="reward_model is required for stage ppo"):
        load_config(write(tmp_path, LF_YAML.replace("stage: sft", "stage: ppo")))
    cfg = load_config(write(tmp_path, LF_YAML + "quantization_bit: 4\n"))
    assert cfg.method.finetuning_type == "qlora" and cfg.method.quantization_type == "nf4"
    assert load_config(write(tmp_path, LF_YAML.replace("stage: sft", "stage: pt"))).data.packing is True


def test_overrides_are_yaml_typed_and_checked(tmp_path):
    path = write(tmp_path, LF_YAML)
    cfg = load_config(path, ["lora_rank=32", "bf16=false", "dataset=a,b", "disable_gradient_checkpointing=true"])
    assert cfg.method.lora_rank == 32 and cfg.training.bf16 is False and cfg.data.dataset == ["a", "b"]
    assert cfg.training.gradient_checkpointing is False
    with pytest.raises(ConfigError) as info:
        load_config(path, ["learning_rat=1e-3"])
    (err,) = info.value.errors
    assert err.file == "<command line>" and "did you mean learning_rate?" in err.message
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(path, ["lora_rank"])


def test_dump_round_trips(tmp_path):
    import yaml

    cfg = load_config(write(tmp_path, LF_YAML), ["neftune_noise_alpha=5", "interleave_probs=0.5,0.5"])
    flat = dump_config(cfg)
    assert flat["lora_target"] == "q_proj,v_proj" and flat["neftune_noise_alpha"] == 5
    again = load_config(write(tmp_path, yaml.safe_dump(flat), "dumped.yaml"))
    assert again == cfg
    small = dump_config(cfg, exclude_defaults=True)
    assert "vllm_maxlen" not in small and small["lora_rank"] == 16


def test_validate_command_checks_runtime_configs(tmp_path):
    import kubetune.config.documents  # noqa: F401

    path = write(tmp_path, LF_YAML.replace("cutoff_len: 1024", "cutoff_len: -5"))
    errors = validate_file(path)
    assert [(e.line, e.path) for e in errors] == [(15, "cutoff_len")]
    assert validate_file(write(tmp_path, LF_YAML, "ok.yaml")) == []


def test_key_tables_are_consistent():
    assert not set(UNSUPPORTED) & set(known_keys())
    assert KEY_GROUP["deepspeed"] == "distributed" and KEY_GROUP["template"] == "data"
    assert RuntimeConfig.model_fields.keys() >= {"model", "data", "method", "preference", "training", "run"}


def test_hf_training_keys_match_installed_transformers():
    from transformers import TrainingArguments

    installed = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    assert installed == set(HF_TRAINING_KEYS)
