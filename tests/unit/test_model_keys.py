"""Model-loading keys in detail: rope_scaling as LLaMA-Factory applies it, MoE router loss, Liger's refusal,
new tokens trained and saved under LoRA, tokenizing in worker processes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, MixtralConfig

from kubetune.config import config_from_flat
from kubetune.data import build_datasets
from kubetune.model.loader import load_tokenizer
from kubetune.model.merging import apply_adapters
from kubetune.model.patches import PatchError, liger_kwargs, moe_overrides, rope_overrides
from kubetune.model.tiny import build_tiny_model
from kubetune.train.workflow import load_trainable

pytestmark = pytest.mark.slow


def test_rope_scaling_stretches_to_cutoff_len():
    config = LlamaConfig(max_position_embeddings=2048)
    assert rope_overrides(config, "linear", 5000) == {
        "rope_parameters": {"rope_type": "linear", "factor": 3.0, "rope_theta": 10000.0},
        "max_position_embeddings": 5000}
    llama3 = rope_overrides(config, "llama3", 4096)["rope_parameters"]
    assert llama3 == {"rope_type": "llama3", "factor": 2.0, "rope_theta": 10000.0,
                      "original_max_position_embeddings": 2048, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    assert rope_overrides(config, "yarn", 4096)["rope_parameters"]["original_max_position_embeddings"] == 2048


def test_rope_scaling_that_would_change_nothing_is_refused():
    with pytest.raises(PatchError, match="rope_scaling: cutoff_len 1024 fits in the model's 2048 positions"):
        rope_overrides(LlamaConfig(max_position_embeddings=2048), "dynamic", 1024)


def test_moe_aux_loss_coef_sets_the_router_loss_of_moe_models_only():
    assert moe_overrides(MixtralConfig(), 0.02) == {"router_aux_loss_coef": 0.02, "output_router_logits": True}
    with pytest.raises(PatchError, match="moe_aux_loss_coef: model type llama is not a mixture-of-experts"):
        moe_overrides(LlamaConfig(), 0.02)


def test_liger_kernels_run_only_with_the_package_and_a_gpu():
    assert liger_kwargs(True, installed=True, cuda=True) == {"use_liger_kernel": True}
    assert liger_kwargs(False, installed=False, cuda=False) == {}
    with pytest.raises(PatchError, match=r"enable_liger_kernel: .*\(liger-kernel is not installed\)"):
        liger_kwargs(True, installed=False, cuda=True)
    with pytest.raises(PatchError, match=r"enable_liger_kernel: .*\(no CUDA GPU here\)"):
        liger_kwargs(True, installed=True, cuda=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("keys") / "model", seed=0)


def test_new_special_tokens_get_trained_rows_saved_with_the_adapter(model_dir, tmp_path):
    cfg = config_from_flat({"model_name_or_path": str(model_dir), "dataset": "d", "output_dir": str(tmp_path),
                            "add_special_tokens": "<tool>", "gradient_checkpointing": False})
    tokenizer = load_tokenizer(cfg.model)
    (token,) = tokenizer("a<tool>b", add_special_tokens=False)["input_ids"][1:2]
    assert tokenizer.convert_ids_to_tokens(token) == "<tool>" and token == len(tokenizer) - 1
    model = load_trainable(cfg, SimpleNamespace(tokenizer=tokenizer, fsdp_layers=[],  # type: ignore[arg-type]
                                                args=SimpleNamespace(local_rank=-1)))
    embed = model.get_input_embeddings()
    assert embed.weight.shape[0] % 64 == 0 and embed.weight.shape[0] >= len(tokenizer)
    assert set(model.peft_config["default"].modules_to_save) == {"embed_tokens", "lm_head"}
    ids = torch.tensor([[5, token, 6]])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "embed_tokens" in n and p.requires_grad]
    assert grads and float(grads[0][token].abs().sum()) > 0  # the new token's row learns
    with torch.no_grad():  # stand-in for training: the new row and the head move away from the base
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    model.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    with (tmp_path / "adapter" / "adapter_config.json").open() as f:
        assert set(json.load(f)["modules_to_save"]) == {"embed_tokens", "lm_head"}
    # export and the hf engine merge it onto the untouched base, growing its embeddings as training did
    merged = apply_adapters(AutoModelForCausalLM.from_pretrained(model_dir), [str(tmp_path / "adapter")], [None])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)


def test_tokenizing_in_worker_processes_gives_the_same_rows(model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"instruction": f"Add {i} and 1.", "input": "", "output": str(i + 1)} for i in range(20)]
    (data / "demo.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"demo": {"file_name": "demo.json"}}))
    built = []
    for workers in (None, 3):
        cfg = config_from_flat({"model_name_or_path": str(model_dir), "dataset": "demo", "dataset_dir": str(data),
                                "template": "qwen", "output_dir": str(tmp_path / "o"), "preprocessing_batch_size": 4,
                                "preprocessing_num_workers": workers, "overwrite_cache": True,
                                "tokenized_cache_dir": str(tmp_path / f"cache-{workers}")})
        built.append(list(build_datasets(cfg, load_tokenizer(cfg.model)).train))
    assert built[0] == built[1] and len(built[0]) == 20
