"""Table tests: the vLLM command rendered from serve configs."""

from __future__ import annotations

import pytest

from kubetune.api.inferenceservice import InferenceService
from kubetune.config.mapping.serve import serve_config_from_inferenceservice
from kubetune.config.mapping.vllm import VllmError, render_vllm_command
from kubetune.config.serve_args import ServeConfig
from tests.builders import make_inferenceservice

BASE = ["vllm", "serve", "/models/qwen", "--host", "0.0.0.0", "--port", "8000"]
PRIVATE = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1"}
RUNTIME_LORA = {**PRIVATE, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}

CASES = [
    pytest.param(
        {"model_name_or_path": "/models/qwen"},
        [*BASE, "--served-model-name", "qwen", "--tensor-parallel-size", "1"], PRIVATE,
        id="defaults: served name is the folder name"),
    pytest.param(
        {"model_name_or_path": "/models/qwen", "infer_backend": "vllm", "vllm_maxlen": 4096, "vllm_gpu_util": 0.7,
         "vllm_enforce_eager": True, "infer_dtype": "bfloat16", "served_model_name": "bot", "port": 9000},
        ["vllm", "serve", "/models/qwen", "--host", "0.0.0.0", "--port", "9000", "--served-model-name", "bot",
         "--tensor-parallel-size", "1", "--dtype", "bfloat16", "--max-model-len", "4096",
         "--gpu-memory-utilization", "0.7", "--enforce-eager"], PRIVATE,
        id="LLaMA-Factory vllm_* keys"),
    pytest.param(
        {"model_name_or_path": "/models/qwen", "lora_adapters": {"sql": "/a/sql", "chat": "/a/chat"},
         "vllm_max_lora_rank": 32, "tensor_parallel_size": 2},
        [*BASE, "--served-model-name", "qwen", "--tensor-parallel-size", "2", "--enable-lora",
         "--max-loras", "2", "--max-lora-rank", "32"], RUNTIME_LORA,
        id="named adapters load at run time: LoRA on, no --lora-modules"),
    pytest.param(
        {"model_name_or_path": "/models/qwen", "adapter_name_or_path": "/a/sft", "served_model_name": "bot"},
        [*BASE, "--served-model-name", "bot-base", "--tensor-parallel-size", "1", "--enable-lora",
         "--lora-modules", "bot=/a/sft", "--max-loras", "1"], RUNTIME_LORA,
        id="one LLaMA-Factory adapter answers to the served name"),
    pytest.param(
        {"model_name_or_path": "/models/qwen", "api_key": "s3cret", "tool_format": "hermes", "do_sample": False,
         "max_new_tokens": 256, "vllm_config": {"enable_prefix_caching": True, "max_num_seqs": 64},
         "extra_args": ["--seed", "1"]},
        [*BASE, "--served-model-name", "qwen", "--tensor-parallel-size", "1", "--enable-auto-tool-choice",
         "--tool-call-parser", "hermes", "--override-generation-config", '{"max_new_tokens": 256, "temperature": 0.0}',
         "--enable-prefix-caching", "--max-num-seqs", "64", "--seed", "1"],
        {**PRIVATE, "VLLM_API_KEY": "s3cret"},
        id="key in the environment, tools, generation defaults, engine args, extra args"),
]


@pytest.mark.parametrize(("config", "argv", "env"), CASES)
def test_render_vllm_command(config, argv, env):
    command = render_vllm_command(ServeConfig.model_validate(config))
    assert command.argv == argv
    assert command.env == env
    assert "s3cret" not in " ".join(command.argv)


def test_several_unnamed_adapters_are_refused():
    with pytest.raises(VllmError, match="merge them with `kubetune export`"):
        render_vllm_command(ServeConfig(model_name_or_path="/m", adapter_name_or_path=["/a", "/b"]))


def test_inferenceservice_maps_to_vllm_argv():
    body = make_inferenceservice(
        name="support-bot", model={"uri": "pvc://models/merged"},
        adapters=[{"name": "support-v2", "uri": "pvc://models/v2"}],
        engine={"backend": "vllm", "tensorParallelSize": 2, "maxModelLen": 8192, "gpuMemoryUtilization": 0.85,
                "maxLoras": 2, "maxLoraRank": 16, "extraArgs": ["--enable-prefix-caching"]},
        resources={"gpusPerReplica": 2})
    isvc = InferenceService.model_validate(body)
    config = serve_config_from_inferenceservice(isvc, model_path="/mnt/pvc/models/merged",
                                                adapters={"support-v2": "/mnt/pvc/models/v2"}, api_key="k")
    assert render_vllm_command(config).argv == [
        "vllm", "serve", "/mnt/pvc/models/merged", "--host", "0.0.0.0", "--port", "8000",
        "--served-model-name", "support-bot", "--tensor-parallel-size", "2", "--max-model-len", "8192",
        "--gpu-memory-utilization", "0.85", "--enable-lora", "--max-loras", "2", "--max-lora-rank", "16",
        "--enable-prefix-caching"]


def test_finetunejob_model_serves_its_adapter_under_the_name():
    isvc = InferenceService.model_validate(make_inferenceservice(
        name="bot", model={"uri": None, "fineTuneJobRef": {"name": "sft"}}, engine={"backend": "vllm"},
        resources={"gpusPerReplica": 1}))
    config = serve_config_from_inferenceservice(isvc, model_path="/base", adapters={}, model_adapter="/out/sft")
    argv = render_vllm_command(config).argv
    assert argv[argv.index("--served-model-name") + 1] == "bot-base"
    assert argv[argv.index("--lora-modules") + 1] == "bot=/out/sft"


@pytest.mark.parametrize("adapters", [[], [{"name": "a", "uri": "pvc://models/a"}],
                                      [{"name": "a", "uri": "pvc://models/a"}, {"name": "b", "uri": "pvc://m/b"}]],
                         ids=["none", "one", "two"])
def test_adapter_list_never_changes_the_command(adapters):
    """`adapters: []` keeps LoRA on, so adapters come and go in the running server with the same argv."""
    isvc = InferenceService.model_validate(make_inferenceservice(
        name="bot", model={"uri": "pvc://models/base"}, adapters=adapters, engine={"backend": "vllm"},
        resources={"gpusPerReplica": 1}))
    paths = {a["name"]: a["uri"] for a in adapters}
    command = render_vllm_command(serve_config_from_inferenceservice(isvc, model_path="/m", adapters=paths))
    assert command.argv == ["vllm", "serve", "/m", "--host", "0.0.0.0", "--port", "8000", "--served-model-name",
                            "bot", "--tensor-parallel-size", "1", "--gpu-memory-utilization", "0.9",
                            "--enable-lora", "--max-loras", "4", "--max-lora-rank", "64"]
    assert command.env == RUNTIME_LORA
