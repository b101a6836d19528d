"""torchrun command lines and FSDP / DeepSpeed configs rendered from the launcher environment and the config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubetune.train.distributed import LaunchError, deepspeed_config, fsdp_config, topology, torchrun_argv

PY = "/usr/bin/python3"
CMD = ["train", "cfg.yaml", "lora_rank=4"]
TAIL = ["-m", "kubetune.cli.main", *CMD]


@pytest.mark.parametrize(
    ("env", "nproc", "devices", "expected"),
    [
        pytest.param({}, None, 0, None, id="cpu-alone"),
        pytest.param({}, None, 1, None, id="one-gpu"),
        pytest.param({"LOCAL_RANK": "0", "NPROC_PER_NODE": "2"}, None, 0, None, id="already-a-worker"),
        pytest.param({}, 2, 0, ["--nproc-per-node=2", "--standalone"], id="flag-on-cpu"),
        pytest.param({}, None, 8, ["--nproc-per-node=8", "--standalone"], id="all-gpus"),
        pytest.param({"NPROC_PER_NODE": "2"}, None, 8, ["--nproc-per-node=2", "--standalone"], id="env-wins-gpus"),
        pytest.param({"NPROC_PER_NODE": "4"}, 2, 8, ["--nproc-per-node=2", "--standalone"], id="flag-wins-env"),
        pytest.param(
            {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "m0", "MASTER_PORT": "23456"}, None, 4,
            ["--nproc-per-node=4", "--nnodes=2", "--node-rank=1", "--master-addr=m0", "--master-port=23456"],
            id="plain-multi-node",
        ),
        pytest.param(
            {"PET_NNODES": "3", "PET_NODE_RANK": "2", "PET_NPROC_PER_NODE": "8", "PET_MASTER_ADDR": "job-master-0",
             "PET_MASTER_PORT": "23456", "RANK": "2", "WORLD_SIZE": "3"}, None, 8,
            ["--nproc-per-node=8", "--nnodes=3", "--node-rank=2", "--master-addr=job-master-0",
             "--master-port=23456"],
            id="pytorchjob",
        ),
        pytest.param(
            {"PET_NNODES": "2", "PET_MASTER_ADDR": "m", "RANK": "1", "MASTER_PORT": "1234"}, None, 1,
            ["--nproc-per-node=1", "--nnodes=2", "--node-rank=0", "--master-addr=m", "--master-port=1234"],
            id="rank-is-not-node-rank",
        ),
        pytest.param(
            {"NNODES": "1", "MASTER_ADDR": "127.0.0.1"}, 2, 0,
            ["--nproc-per-node=2", "--nnodes=1", "--node-rank=0", "--master-addr=127.0.0.1", "--master-port=29500"],
            id="one-node-with-master",
        ),
    ],
)
def test_torchrun_argv(env, nproc, devices, expected):
    argv = torchrun_argv(env, nproc, devices, PY, CMD)
    if expected is None:
        assert argv is None
    else:
        assert argv == [PY, "-m", "torch.distributed.run", *expected, *TAIL]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NNODES": "2"}, "needs MASTER_ADDR"),
        ({"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "m"}, "NODE_RANK=2"),
        ({"PET_NNODES": "two"}, "PET_NNODES='two': expected an integer"),
    ],
)
def test_bad_launcher_environment(env, message):
    with pytest.raises(LaunchError, match=message):
        topology(env, None, 1)


def test_fsdp_config_wraps_decoder_layers():
    cfg = fsdp_config(["LlamaDecoderLayer"], offload=False, activation_checkpointing=True)
    assert cfg == {
        "version": 2, "reshard_after_forward": True, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"], "cpu_offload": False,
        "activation_checkpointing": True, "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False,
    }
    assert fsdp_config(["Qwen2DecoderLayer"], offload=True, activation_checkpointing=False)["cpu_offload"] is True
    with pytest.raises(LaunchError, match="decoder layer"):
        fsdp_config([], offload=False, activation_checkpointing=False)


@pytest.mark.parametrize(
    ("stage", "offload", "zero"),
    [
        (0, False, {"stage": 0}),
        (2, False, {"stage": 2, "overlap_comm": False, "contiguous_gradients": True, "reduce_bucket_size": "auto",
                    "allgather_partitions": True, "allgather_bucket_size": 5e8, "reduce_scatter": True,
                    "round_robin_gradients": True}),
        (2, True, {"stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": True}}),
        (3, False, {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True,
                    "stage3_prefetch_bucket_size": "auto"}),
        (3, True, {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": True},
                   "offload_param": {"device": "cpu", "pin_memory": True}}),
    ],
)
def test_deepspeed_config(stage, offload, zero):
    cfg = deepspeed_config(stage, offload=offload)
    assert zero.items() <= cfg["zero_optimization"].items()
    assert ("offload_param" in cfg["zero_optimization"]) == (stage == 3 and offload)
    # transformers fills the "auto" values from the training arguments, so batch sizes never disagree.
    assert cfg["train_micro_batch_size_per_gpu"] == cfg["gradient_accumulation_steps"] == "auto"
    assert cfg["bf16"] == {"enabled": "auto"}


def test_deepspeed_config_rejects_bad_stages():
    with pytest.raises(LaunchError, match="expected 0, 2 or 3"):
        deepspeed_config(1, offload=False)
    with pytest.raises(LaunchError, match="offloading needs"):
        deepspeed_config(0, offload=True)


def test_rendering_never_imports_deepspeed():
    """The launcher side renders configs as plain data: no DeepSpeed (absent on CPU images), not even torch."""
    code = ("import sys; from kubetune.train.distributed import deepspeed_config, fsdp_config, torchrun_argv;"
            "deepspeed_config(3, offload=True); fsdp_config(['L'], offload=True, activation_checkpointing=True);"
            "bad = {'deepspeed', 'torch', 'transformers'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("arch", "expected"), [
    ("llama", ["LlamaDecoderLayer"]),
    ("qwen2_vl", ["Qwen2VLDecoderLayer", "Qwen2VLVisionBlock"]),  # the vision tower's blocks are shard units too
    ("llava", ["CLIPEncoderLayer", "CLIPVisionEmbeddings", "LlamaDecoderLayer"]),  # no CLIP text classes
])
def test_fsdp_layer_classes_of_text_and_vision_language_models(arch, expected, tmp_path):
    from kubetune.config.model_args import ModelConfig
    from kubetune.model.loader import decoder_layer_classes
    from kubetune.model.tiny import build_tiny_model, build_tiny_vlm

    path = build_tiny_model(tmp_path, arch) if arch == "llama" else build_tiny_vlm(tmp_path, arch)
    assert decoder_layer_classes(ModelConfig(model_name_or_path=str(path))) == expected
