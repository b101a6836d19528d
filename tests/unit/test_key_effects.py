"""No silent keys: every key a runtime config accepts changes what kubetune does, or is refused.

``CHECKS`` holds one check per accepted key (``known_keys()``): an :class:`Effect` sets a non-default value and
shows that what the runtime builds from the config changes (TrainingArguments, the loaded model or tokenizer, the
tokenized data, the generation, loss or optimizer settings); a :class:`Refusal` shows that the value is refused with
a message naming the key. A key the config accepts without a check fails :func:`test_every_accepted_key_has_a_check`.
Everything is built once on a tiny local Llama (tests/assets tokenizer), on CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import torch
from datasets import Dataset

from kubetune.config import ConfigError, RuntimeConfig, config_from_flat
from kubetune.config.hf_keys import HF_TRAINING_KEYS
from kubetune.config.keys import DEFAULT_ONLY, KEY_GROUP, known_keys
from kubetune.model.loader import load_tokenizer, quantization_config
from kubetune.model.tiny import build_tiny_model
from kubetune.train.arguments import argument_kwargs, precision_of, training_arguments
from tests.support.benchmarks import small_benchmark

pytestmark = pytest.mark.slow

ROWS = [{"instruction": f"What is {i} plus one?", "input": "", "output": f"It is {i + 1}."} for i in range(12)]
OTHER = [{"instruction": f"Name colour {i}.", "input": "", "output": ["red", "green", "blue"][i % 3]}
         for i in range(12)]
CHAT = [{"conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": f"hello {i}"},
                           {"from": "human", "value": "and then?"}, {"from": "gpt", "value": f"bye {i}"}]}
        for i in range(6)]


@dataclass
class Env:
    root: Path
    model: Path
    other_model: Path
    grown: Path  # its tokenizer has one token more than the embeddings have rows
    adapter: Path
    nested: Path  # an adapter, and another in nested/sub
    data: Path
    other_data: Path
    benchmarks: Path


def _write_data(folder: Path, demo: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    files = {"demo": demo, "other": OTHER, "chat": CHAT, "bad": [*ROWS[:3], {"instruction": "no answer"}]}
    for name, rows in files.items():
        (folder / f"{name}.json").write_text(json.dumps(rows))
    info = {name: {"file_name": f"{name}.json"} for name in files}
    info["chat"]["formatting"] = "sharegpt"
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


def _save_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("keys")
    model = build_tiny_model(root / "model", seed=0)
    other = build_tiny_model(root / "other-model", seed=1)
    grown = root / "grown"
    shutil.copytree(model, grown)
    tok = AutoTokenizer.from_pretrained(grown)
    tok.add_tokens(["<grown>"])
    tok.save_pretrained(grown)
    adapter = _save_adapter(model, root / "adapter", seed=2)
    nested = _save_adapter(model, root / "nested", seed=3)
    _save_adapter(model, nested / "sub", seed=4)
    return Env(root, model, other, grown, adapter, nested, _write_data(root / "data", ROWS),
               _write_data(root / "data2", [{**r, "output": r["output"].upper()} for r in ROWS]),
               small_benchmark(root / "bench"))


def base_keys(env: Env) -> dict[str, Any]:
    return {"model_name_or_path": str(env.model), "dataset": "demo", "dataset_dir": str(env.data),
            "template": "qwen", "cutoff_len": 64, "output_dir": str(env.root / "out"),
            "tokenized_cache_dir": str(env.root / "tokenized"), "report_to": "none"}


# ---------------------------------------------------------------------------------------------------- probes
# Each probe builds what the runtime builds from a config and returns something comparable.

def targs(cfg: RuntimeConfig, env: Env) -> dict[str, Any]:
    """The TrainingArguments keyword arguments, as training_arguments computes them on this machine."""
    liger = (importlib.util.find_spec("liger_kernel") is not None, torch.cuda.is_available())
    kwargs, _ = argument_kwargs(cfg, precision=precision_of(cfg.training), layer_classes=["LlamaDecoderLayer"],
                                installed={"tensorboard"}, output_dir=cfg.training.output_dir, liger=liger)
    return kwargs


def targ(key: str) -> Callable[[RuntimeConfig, Env], Any]:
    return lambda cfg, env: targs(cfg, env).get(key, "<absent>")


def trainable(cfg: RuntimeConfig, env: Env, task: str = "causal_lm") -> tuple[Any, Any]:
    """The tokenizer and the model with the method applied, as the stages load them."""
    from kubetune.train.workflow import load_trainable

    tokenizer = load_tokenizer(cfg.model)
    run = SimpleNamespace(tokenizer=tokenizer, fsdp_layers=[], args=SimpleNamespace(local_rank=-1))
    return tokenizer, load_trainable(cfg, run, task)  # type: ignore[arg-type]


def checksum(model: Any, part: str = "") -> float:
    return round(sum(float(p.detach().float().abs().sum()) for n, p in model.named_parameters() if part in n), 3)


def trained_names(cfg: RuntimeConfig, env: Env) -> tuple[str, ...]:
    _, model = trainable(cfg, env)
    return tuple(sorted(n for n, p in model.named_parameters() if p.requires_grad))


def peft_settings(cfg: RuntimeConfig, env: Env) -> dict[str, Any]:
    _, model = trainable(cfg, env)
    config = model.peft_config["default"]
    return {k: str(getattr(config, k, None)) for k in ("r", "lora_alpha", "lora_dropout", "target_modules",
                                                       "modules_to_save", "use_rslora", "use_dora",
                                                       "init_lora_weights")}


def lora_b(cfg: RuntimeConfig, env: Env) -> float:
    return checksum(trainable(cfg, env)[1], "lora_B")


def logits(cfg: RuntimeConfig, env: Env) -> tuple[str, float]:
    _, model = trainable(cfg, env)
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        out = model(input_ids=ids).logits
    return str(out.dtype), round(float(out.float().sum()), 3)


def embedding_rows(cfg: RuntimeConfig, env: Env) -> tuple[int, int, tuple[str, ...]]:
    tokenizer, model = trainable(cfg, env)
    saved = tuple(sorted(str(m) for m in ((getattr(model, "peft_config", {}).get("default") and
                                          model.peft_config["default"].modules_to_save) or [])))
    return len(tokenizer), model.get_input_embeddings().weight.shape[0], saved


def use_reentrant(cfg: RuntimeConfig, env: Env) -> Any:
    _, model = trainable(cfg, env)
    funcs = [m._gradient_checkpointing_func for m in model.modules() if hasattr(m, "_gradient_checkpointing_func")]
    return funcs[0].keywords.get("use_reentrant") if funcs else "off"


def from_pretrained_kwargs(name: str) -> Callable[[RuntimeConfig, Env], Any]:
    """What the loader passes to AutoConfig.from_pretrained for ``name`` (a hub download's revision, cache...)."""
    def probe(cfg: RuntimeConfig, env: Env) -> Any:
        from transformers import AutoConfig

        with mock.patch("kubetune.model.loader.AutoConfig.from_pretrained",
                        wraps=AutoConfig.from_pretrained) as spy:
            trainable(cfg, env)
        return spy.call_args.kwargs.get(name)
    return probe


def train_layout(cfg: RuntimeConfig, env: Env) -> tuple[str, str]:
    """The pt/sft collator and the attention implementation the model trains with."""
    from kubetune.train.workflow import collator_for, use_padding_free

    tokenizer, model = trainable(cfg, env)
    run = SimpleNamespace(tokenizer=tokenizer, processor=None, args=SimpleNamespace(world_size=1),
                          bundle=SimpleNamespace(collator=None))
    use_padding_free(cfg, run, model)  # type: ignore[arg-type]
    collator = collator_for(cfg, run, model)  # type: ignore[arg-type]
    return type(collator).__name__, model.config._attn_implementation


def data(cfg: RuntimeConfig, env: Env) -> tuple[Any, ...]:
    """The tokenized train and eval rows."""
    from kubetune.data import build_datasets

    bundle = build_datasets(cfg, load_tokenizer(cfg.model))
    rows = lambda ds: None if ds is None else tuple(json.dumps(r, sort_keys=True) for r in ds)  # noqa: E731
    return rows(bundle.train), rows(bundle.eval)


def cache_path(cfg: RuntimeConfig, env: Env) -> str | None:
    from kubetune.data import build_datasets

    return build_datasets(cfg, load_tokenizer(cfg.model)).stats.cache_path


def second_build_from_cache(cfg: RuntimeConfig, env: Env) -> bool:
    from kubetune.data import build_datasets

    tokenizer = load_tokenizer(cfg.model)
    build_datasets(cfg, tokenizer)
    return build_datasets(cfg, tokenizer).stats.from_cache


def prepared_per_node(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.data import build_datasets, bundle

    with mock.patch.object(bundle, "main_process_first", wraps=bundle.main_process_first) as spy:
        build_datasets(cfg, load_tokenizer(cfg.model))
    return spy.call_args.kwargs["local"]


def batch_lengths(batch: list[int]) -> list[tuple[int, int]]:
    return [(len(batch), os.getpid())] * len(batch)


def tokenizing_batches(cfg: RuntimeConfig, env: Env) -> tuple[tuple[int, ...], bool]:
    """How map_batches splits and places the work for the configured batch size and workers."""
    from kubetune.data.parallel import map_batches

    out = map_batches(batch_lengths, list(range(8)), cfg.data.preprocessing_batch_size,
                      cfg.data.preprocessing_num_workers)
    return tuple(n for n, _ in out), any(pid != os.getpid() for _, pid in out)


def outcome(probe: Callable[[RuntimeConfig, Env], Any]) -> Callable[[RuntimeConfig, Env], Any]:
    """The probe's result, or the error it raised (for keys whose effect is that a bad input is caught)."""
    def run(cfg: RuntimeConfig, env: Env) -> Any:
        try:
            return probe(cfg, env)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    return run


def generation(cfg: RuntimeConfig, env: Env) -> dict[str, Any]:
    from kubetune.eval.predict import generation_kwargs

    return generation_kwargs(cfg.generation, pad_id=0, stop_ids=[1])


def decoded(cfg: RuntimeConfig, env: Env) -> str:
    from kubetune.eval.predict import decode_prediction

    tokenizer = load_tokenizer(cfg.model)
    ids = tokenizer("<think>yes", add_special_tokens=False)["input_ids"]
    return decode_prediction(tokenizer, ids, [tokenizer.eos_token_id], cfg.generation.skip_special_tokens)


def dpo_settings(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.train.dpo import dpo_losses
    from kubetune.train.dpo_reference_free import reference_free_kwargs

    if cfg.preference.pref_loss in ("orpo", "simpo"):
        return cfg.preference.pref_loss, reference_free_kwargs(cfg)
    return "dpo", dpo_losses(cfg.preference)


def kto_settings(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.train.kto import kto_kwargs

    return kto_kwargs(cfg.preference)


def reference(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.train.preference import load_reference

    tokenizer = load_tokenizer(cfg.model)
    run = SimpleNamespace(tokenizer=tokenizer, args=SimpleNamespace(local_rank=-1))
    ref = load_reference(cfg, run)  # type: ignore[arg-type]
    return None if ref is None else checksum(ref)


def ppo_settings(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.train.ppo import kl_controller, settings

    t = cfg.training
    args = SimpleNamespace(per_device_train_batch_size=t.per_device_train_batch_size, max_grad_norm=t.max_grad_norm,
                           gradient_accumulation_steps=t.gradient_accumulation_steps)
    kl = kl_controller(cfg.preference)
    kl.update(current_kl=3.0, n_steps=8)
    return repr(settings(cfg, args, load_tokenizer(cfg.model))), kl.value


def reward_scorer(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.train.ppo import make_scorer

    scorer = make_scorer(cfg, torch.device("cpu"))
    return type(scorer).__name__, getattr(scorer, "url", None)


def reward_kind(cfg: RuntimeConfig, env: Env) -> str:
    from kubetune.train.ppo import reward_source
    from kubetune.train.reward import is_adapter

    return reward_source(cfg.preference.reward_model_type, is_adapter(str(cfg.preference.reward_model)))


def optimizer(cfg: RuntimeConfig, env: Env) -> Any:
    """The optimizer the kubetune trainer builds: its class, parameter groups and settings."""
    from kubetune.train.trainer import KubetuneTrainer

    tokenizer, model = trainable(cfg, env)
    args = training_arguments(cfg, env.root / "trainer", [], disable_tqdm=True)
    rows = Dataset.from_list([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}])
    trainer = KubetuneTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                              loraplus=cfg.method if cfg.method.loraplus_lr_ratio else None,
                              optimizer_keys=cfg.optimizer)
    opt = trainer.create_optimizer()
    settings = {k: v for k, v in vars(opt).items()
                if k in ("switch_block_every", "switch_mode", "current_block_idx", "verbose", "update_ratio",
                         "mask_mode", "scale_front")}
    inner = getattr(opt, "optimizer_dict", None)
    if isinstance(inner, dict):
        settings["scale_front"] = sorted({getattr(o, "scale_front", None) is True for o in inner.values()})
    groups = [{k: (len(v) if k == "params" else v) for k, v in g.items()
               if k in ("params", "lr", "weight_decay", "rank", "update_proj_gap", "scale", "proj_type", "proj",
                        "scale_type")} for g in opt.param_groups]
    return type(opt).__name__, groups, settings


def model_config(cfg: RuntimeConfig, env: Env) -> Any:
    _, model = trainable(cfg, env)
    return (dict(model.config.rope_parameters), model.config.max_position_embeddings,
            model.config._attn_implementation)


def norm_dtype(cfg: RuntimeConfig, env: Env) -> str:
    _, model = trainable(cfg, env)
    return str(model.get_base_model().model.norm.weight.dtype)


def manifest(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.train.outputs import manifest_for

    return manifest_for(cfg, {}).model_dump(mode="json", exclude={"created_at"})


def fresh_start(cfg: RuntimeConfig, env: Env) -> bool:
    from kubetune.train.outputs import fresh_start

    return fresh_start(cfg)


def resume_from(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.train.outputs import resume_checkpoint

    return str(resume_checkpoint(cfg, Path(cfg.training.output_dir)))


def loss_curve(cfg: RuntimeConfig, env: Env) -> bool:
    """Whether save_final draws training_loss.png (the Trainer is a stand-in that records nothing else)."""
    from kubetune.train import outputs

    out = env.root / f"curve-{cfg.training.plot_loss}"
    out.mkdir(exist_ok=True)
    (out / "trainer_log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n')
    trainer = mock.MagicMock()
    trainer.is_world_process_zero.return_value = True
    outputs.save_final(trainer, cfg, out, {})
    return (out / "training_loss.png").is_file()


def sinks(cfg: RuntimeConfig, env: Env) -> tuple[str, ...]:
    from kubetune.train.cli import progress_sinks

    return tuple(type(s).__name__ for s in progress_sinks(cfg))


def progress_interval(cfg: RuntimeConfig, env: Env) -> float:
    from kubetune.train.progress import ProgressReporter
    from kubetune.train.trainer import kubetune_callbacks

    callbacks = kubetune_callbacks(env.root / "progress", [], cfg.run.progress_interval_s, False)
    return next(c for c in callbacks if isinstance(c, ProgressReporter)).interval_s


def benchmarks(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.train.context import TrainContext
    from kubetune.train.workflow import baseline_scores, score_declared

    tokenizer, model = trainable(cfg, env)
    ctx = TrainContext(say=lambda _: None)
    declared = [r.task for r in score_declared(cfg, ctx, model, tokenizer)]
    baseline = baseline_scores(cfg, ctx, model, tokenizer)
    return declared, None if baseline is None else len(baseline)


def stage_module(cfg: RuntimeConfig, env: Env) -> str:
    from kubetune.train.stages import stage_runner

    return stage_runner(cfg.stage).__module__


def quant(cfg: RuntimeConfig, env: Env) -> Any:
    """The bitsandbytes settings the loader would use on a CUDA machine (QLoRA is refused on CPU)."""
    config = quantization_config(cfg.method, torch.bfloat16, bnb_installed=True, cuda=True)
    return None if config is None else config.to_dict()


def tokens_of(text: str) -> Callable[[RuntimeConfig, Env], Any]:
    return lambda cfg, env: load_tokenizer(cfg.model)(text, add_special_tokens=False)["input_ids"]


def grpo_args(cfg: RuntimeConfig, env: Env) -> Any:
    from kubetune.train.grpo import grpo_arguments

    return grpo_arguments(cfg)


def grpo_rewards(cfg: RuntimeConfig, env: Env) -> Any:
    """Each reward function's kind, what the format reward scores on sample completions, and an HTTP scorer's
    address and time limit."""
    from kubetune.train.grpo_rewards import build_rewards

    described = []
    for func in build_rewards(cfg.grpo):
        cells = [cell.cell_contents for cell in func.__closure__ or ()]
        scorer = [(c.url, c.timeout_s) for c in cells if type(c).__name__ == "HttpScorer"]
        scores = func(["p"], ["x", "<answer>4</answer>"]) if func.__name__ == "format" else None
        described.append((func.__name__, scores, scorer))
    return described


def liger(cfg: RuntimeConfig, env: Env) -> Any:
    return outcome(targ("use_liger_kernel"))(cfg, env)


# ---------------------------------------------------------------------------------------------------- checks

@dataclass
class Effect:
    """Setting ``key: value`` (on top of ``base``) changes what ``probe`` returns."""

    value: Any
    probe: Callable[[RuntimeConfig, Env], Any]
    base: dict[str, Any] = field(default_factory=dict)


@dataclass
class Elsewhere:
    """The key's effect needs a vision-language model and pictures: ``test`` (path::name) shows it."""

    test: str


@dataclass
class Refusal:
    """``key: value`` is refused: by the config loader (``at`` None) or by ``at`` (model loading, launch)."""

    value: Any
    at: Callable[[RuntimeConfig, Env], Any] | None = None
    base: dict[str, Any] = field(default_factory=dict)
    match: str | None = None  # default: the key


def P(**keys: Any) -> dict[str, Any]:
    return keys


FULL = P(finetuning_type="full")
GALORE, APOLLO, BADAM = P(use_galore=True, **FULL), P(use_apollo=True, **FULL), P(use_badam=True, **FULL)
GRPO = P(stage="grpo", reward_funcs="exact_match", num_generations=2, per_device_train_batch_size=2, do_sample=True,
         temperature=1.0, max_new_tokens=8)
MULTIMODAL = "tests/unit/test_multimodal_data.py::"
PPO = P(stage="ppo", reward_model="http://127.0.0.1:1/score", reward_model_type="api")
BENCH = "eval_benchmarks"

CHECKS: dict[str, Effect | Refusal | Elsewhere] = {
    "stage": Effect("pt", stage_module),
    # grpo
    "beta": Effect(0.04, grpo_args, GRPO),
    "epsilon": Effect(0.3, grpo_args, GRPO),
    "loss_type": Effect("dr_grpo", grpo_args, GRPO),
    "num_generations": Effect(4, grpo_args, P(**GRPO | {"per_device_train_batch_size": 4})),
    "num_iterations": Effect(2, grpo_args, GRPO),
    "scale_rewards": Effect("batch", grpo_args, GRPO),
    "reward_weights": Effect("2.0", grpo_args, GRPO),
    "reward_funcs": Effect("format", grpo_rewards, GRPO),
    "reward_format_pattern": Effect("x", grpo_rewards, P(**GRPO | {"reward_funcs": "format"})),
    "reward_timeout": Effect(5.0, grpo_rewards, P(**GRPO | {"reward_funcs": "http://127.0.0.1:1/score"})),
    # vision-language models
    "freeze_vision_tower": Elsewhere(MULTIMODAL + "test_lora_adapts_the_parts_that_are_not_frozen"),
    "freeze_multi_modal_projector": Elsewhere(MULTIMODAL + "test_lora_adapts_the_parts_that_are_not_frozen"),
    "freeze_language_model": Elsewhere(MULTIMODAL + "test_lora_adapts_the_parts_that_are_not_frozen"),
    "image_max_pixels": Elsewhere(MULTIMODAL + "test_pixel_bounds_scale_like_llamafactory"),
    "image_min_pixels": Elsewhere(MULTIMODAL + "test_pixel_bounds_scale_like_llamafactory"),
    "media_dir": Elsewhere(MULTIMODAL + "test_remote_and_escaping_image_paths_are_refused"),
    # model
    "model_name_or_path": Effect("<other>", lambda c, e: checksum(trainable(c, e)[1])),
    "adapter_name_or_path": Effect("<adapter>", lora_b),
    "adapter_folder": Effect("sub", lora_b, P(adapter_name_or_path="<nested>")),
    "cache_dir": Effect("<root>/hub", from_pretrained_kwargs("cache_dir")),
    "model_revision": Effect("v2", from_pretrained_kwargs("revision")),
    "split_special_tokens": Effect(True, tokens_of("<|im_end|>")),
    "resize_vocab": Effect(True, embedding_rows, P(model_name_or_path="<grown>")),
    "add_tokens": Effect("<x1>,<x2>", embedding_rows),
    "add_special_tokens": Effect("<sp1>", lambda c, e: (tokens_of("a<sp1>b")(c, e), embedding_rows(c, e))),
    "rope_scaling": Effect("linear", lambda c, e: (model_config(c, e), logits(c, e)), P(cutoff_len=4096)),
    "flash_attn": Effect("disabled", model_config),
    "enable_liger_kernel": Effect(True, liger),
    "moe_aux_loss_coef": Refusal(0.01, trainable),
    "use_reentrant_gc": Effect(False, use_reentrant),
    "upcast_layernorm": Effect(True, norm_dtype, P(bf16=True)),
    "upcast_lmhead_output": Effect(True, logits, P(bf16=True)),
    "train_from_scratch": Effect(True, lambda c, e: checksum(trainable(c, e)[1])),
    "trust_remote_code": Effect(True, from_pretrained_kwargs("trust_remote_code")),
    # data
    "template": Effect("llama3", data),
    "dataset": Effect("other", data),
    "eval_dataset": Effect("other", data),
    "dataset_dir": Effect("<data2>", data),
    "dataset_info": Effect({"demo": {"file_name": "other.json"}}, data),
    "cutoff_len": Effect(12, data),
    "train_on_prompt": Effect(True, data),
    "mask_history": Effect(True, data, P(dataset="chat")),
    "mix_strategy": Effect("interleave_under", data, P(dataset="demo,other")),
    "interleave_probs": Effect("0.9,0.1", data, P(dataset="demo,other", mix_strategy="interleave_over")),
    "overwrite_cache": Effect(True, second_build_from_cache),
    "preprocessing_batch_size": Effect(3, tokenizing_batches),
    "preprocessing_num_workers": Effect(2, tokenizing_batches, P(preprocessing_batch_size=2)),
    "max_samples": Effect(3, data),
    "val_size": Effect(0.25, data),
    "packing": Effect(True, data, P(cutoff_len=256)),
    "neat_packing": Effect(True, data),
    "padding_free": Effect(False, train_layout),
    "default_system": Effect("You count.", data),
    "enable_thinking": Effect(False, data, P(template="qwen3")),
    "tokenized_path": Effect("<root>/tokenized-here", cache_path),
    "data_shared_file_system": Effect(True, prepared_per_node),
    "tokenized_cache_dir": Effect("<root>/tokenized-elsewhere", cache_path),
    "bad_rows": Effect("skip", outcome(data), P(dataset="bad")),
    # method
    "finetuning_type": Effect("full", trained_names),
    "lora_rank": Effect(4, peft_settings),
    "lora_alpha": Effect(3, peft_settings),
    "lora_dropout": Effect(0.1, peft_settings),
    "lora_target": Effect("q_proj", peft_settings),
    "additional_target": Effect("lm_head", peft_settings),
    "loraplus_lr_ratio": Effect(16.0, optimizer),
    "loraplus_lr_embedding": Effect(1e-3, optimizer, P(loraplus_lr_ratio=16.0, lora_target="embed_tokens,q_proj")),
    "use_rslora": Effect(True, peft_settings),
    "use_dora": Effect(True, peft_settings),
    "pissa_init": Effect(True, peft_settings),
    "pissa_iter": Effect(4, peft_settings, P(pissa_init=True)),
    "create_new_adapter": Effect(True, lora_b, P(adapter_name_or_path="<adapter>")),
    "freeze_trainable_layers": Effect(1, trained_names, P(finetuning_type="freeze")),
    "freeze_trainable_modules": Effect("mlp", trained_names, P(finetuning_type="freeze")),
    "freeze_extra_modules": Effect("embed_tokens", trained_names, P(finetuning_type="freeze")),
    "quantization_method": Refusal("hqq"),
    "quantization_bit": Effect(8, quant),
    "quantization_type": Effect("fp4", quant, P(quantization_bit=4)),
    "double_quantization": Effect(False, quant, P(quantization_bit=4)),
    # preference
    "pref_beta": Effect(0.5, dpo_settings, P(stage="dpo")),
    "pref_ftx": Effect(0.5, dpo_settings, P(stage="dpo")),
    "pref_loss": Effect("hinge", dpo_settings, P(stage="dpo")),
    "dpo_label_smoothing": Effect(0.1, dpo_settings, P(stage="dpo")),
    "simpo_gamma": Effect(1.0, dpo_settings, P(stage="dpo", pref_loss="simpo")),
    "ld_alpha": Effect(0.5, dpo_settings, P(stage="dpo")),
    "kto_chosen_weight": Effect(2.0, kto_settings, P(stage="kto", per_device_train_batch_size=2)),
    "kto_rejected_weight": Effect(2.0, kto_settings, P(stage="kto", per_device_train_batch_size=2)),
    "ref_model": Effect("<other>", reference, P(stage="dpo")),
    "ref_model_adapters": Effect("<adapter>", reference, P(stage="dpo", ref_model="<model>")),
    "reward_model": Effect("http://127.0.0.1:2/score", reward_scorer, PPO),
    "reward_model_type": Refusal("full", reward_kind, P(stage="ppo", reward_model="<adapter>")),
    "ppo_buffer_size": Effect(2, ppo_settings, PPO),
    "ppo_epochs": Effect(2, ppo_settings, PPO),
    "ppo_score_norm": Effect(True, ppo_settings, PPO),
    "ppo_target": Effect(1.0, ppo_settings, PPO),
    "ppo_kl_coef": Effect(0.2, ppo_settings, PPO),
    "ppo_whiten_rewards": Effect(True, ppo_settings, PPO),
    # generation
    "do_sample": Effect(False, generation),
    "temperature": Effect(0.5, generation),
    "top_p": Effect(0.9, generation),
    "top_k": Effect(5, generation),
    "num_beams": Effect(2, generation),
    "max_length": Effect(64, generation, P(max_new_tokens=0)),
    "max_new_tokens": Effect(16, generation),
    "repetition_penalty": Effect(1.2, generation),
    "length_penalty": Effect(0.5, generation),
    "skip_special_tokens": Effect(False, decoded),
    # training (runtime additions and keys with their own handling; the rest reach TrainingArguments)
    "overwrite_output_dir": Effect(True, fresh_start),
    "warmup_ratio": Effect(0.1, targ("warmup_steps")),
    "precision": Effect("bf16", targ("bf16")),
    "predict_with_generate": Effect(True, lambda c, e: c.wants_predictions, P(do_predict=True, val_size=0.25)),
    "gradient_checkpointing": Effect(False, use_reentrant),
    "disable_gradient_checkpointing": Effect(True, use_reentrant),
    "resume_from_checkpoint": Effect("<root>", outcome(resume_from)),
    "plot_loss": Effect(False, loss_curve),
    "report_to": Effect("tensorboard", targ("report_to")),
    # distributed (rendered into TrainingArguments; launching them on CPU is refused by check_strategy)
    "strategy": Effect("fsdp", targ("fsdp")),
    "deepspeed": Effect("ds_z3", targ("deepspeed")),
    "fsdp": Effect("full_shard auto_wrap", targ("fsdp_config")),
    "fsdp_config": Effect({"min_num_params": 1000}, targ("fsdp_config"), P(strategy="fsdp")),
    # run
    "resume": Effect("never", fresh_start),
    **{k: Effect("x", manifest) for k in ("created_by_kind", "created_by_name", "created_by_namespace",
                                         "created_by_uid", "base_model_uri", "base_model_revision")},
    "progress_file": Effect("<root>/progress.json", sinks),
    "progress_interval_s": Effect(1.5, progress_interval),
    # evaluation
    BENCH: Effect([{"task": "tiny_test", "task_dir": "<bench>", "n_shot": 0}], benchmarks),
    "eval_baseline": Effect(True, benchmarks, {BENCH: [{"task": "tiny_test", "task_dir": "<bench>", "n_shot": 0}]}),
    # optimizers
    "use_galore": Effect(True, optimizer, FULL),
    "galore_target": Effect("q_proj", optimizer, GALORE),
    "galore_rank": Effect(4, optimizer, GALORE),
    "galore_update_interval": Effect(10, optimizer, GALORE),
    "galore_scale": Effect(0.5, optimizer, GALORE),
    "galore_proj_type": Effect("left", optimizer, GALORE),
    "galore_layerwise": Effect(True, optimizer, GALORE),
    "use_apollo": Effect(True, optimizer, FULL),
    "apollo_target": Effect("q_proj", optimizer, APOLLO),
    "apollo_rank": Effect(4, optimizer, APOLLO),
    "apollo_update_interval": Effect(10, optimizer, APOLLO),
    "apollo_scale": Effect(1.0, optimizer, APOLLO),
    "apollo_proj": Effect("svd", optimizer, APOLLO),
    "apollo_proj_type": Effect("left", optimizer, APOLLO),
    "apollo_scale_type": Effect("tensor", optimizer, APOLLO),
    "apollo_layerwise": Effect(True, optimizer, APOLLO),
    "apollo_scale_front": Effect(True, optimizer, APOLLO),
    "use_badam": Effect(True, optimizer, FULL),
    "badam_mode": Effect("ratio", optimizer, BADAM),
    "badam_start_block": Effect(1, optimizer, BADAM),
    "badam_switch_mode": Effect("descending", optimizer, BADAM),
    "badam_switch_interval": Effect(5, optimizer, BADAM),
    "badam_update_ratio": Effect(0.5, optimizer, P(badam_mode="ratio", **BADAM)),
    "badam_mask_mode": Effect("scatter", optimizer, P(badam_mode="ratio", **BADAM)),
    "badam_verbose": Effect(1, optimizer, BADAM),
}

# Keys taken at one value only (kubetune.config.keys.DEFAULT_ONLY): another value is refused by the loader.
REFUSED_VALUES: dict[str, Any] = {
    "low_cpu_mem_usage": False, "use_fast_tokenizer": False, "infer_backend": "vllm", "infer_dtype": "float16",
    "use_kv_cache": False, "vllm_maxlen": 8192, "vllm_gpu_util": 0.9, "vllm_enforce_eager": True,
    "vllm_max_lora_rank": 64, "vllm_config": {"max_num_seqs": 4}, "eval_on_each_dataset": True,
    "ignore_pad_token_for_loss": False, "preserve_thinking": True, "tool_format": "qwen", "pissa_convert": True,
    "reward_model_adapters": "<adapter>", "remove_unused_columns": True,
    "gradient_checkpointing_kwargs": {"use_reentrant": False}, "activation_checkpointing_kwargs": {"x": 1},
    "do_train": False, "pref_bco_weight": 0.5, "ref_model_quantization_bit": 4, "reward_model_quantization_bit": 8,
}
CHECKS |= {key: Refusal(value) for key, value in REFUSED_VALUES.items()}

# Typed TrainingArguments keys and the other transformers keys kubetune passes through: the value reaches
# TrainingArguments unchanged.
TRAINING_VALUES: dict[str, Any] = {
    "output_dir": "<root>/elsewhere", "num_train_epochs": 1.0, "max_steps": 7, "per_device_train_batch_size": 2,
    "per_device_eval_batch_size": 2, "gradient_accumulation_steps": 4, "learning_rate": 1e-3,
    "lr_scheduler_type": "cosine", "lr_scheduler_kwargs": {"num_cycles": 2}, "warmup_steps": 3,
    "weight_decay": 0.1, "max_grad_norm": 0.5, "optim": "adamw_torch", "logging_steps": 2, "save_strategy": "epoch",
    "save_steps": 7, "save_total_limit": 2, "save_only_model": True, "eval_strategy": "steps", "eval_steps": 3,
    "seed": 7, "bf16": True, "fp16": True, "dataloader_num_workers": 2, "ddp_timeout": 60,
    # passthrough
    "accelerator_config": {"split_batches": True}, "activation_checkpointing": True, "adam_beta1": 0.8,
    "adam_beta2": 0.99, "adam_epsilon": 1e-6, "auto_find_batch_size": True, "average_tokens_across_devices": False,
    "batch_eval_metrics": True, "bf16_full_eval": True, "data_seed": 3, "dataloader_drop_last": True,
    "dataloader_in_order": True, "dataloader_multiprocessing_context": "spawn",
    "dataloader_persistent_workers": True, "dataloader_pin_memory": False, "dataloader_prefetch_factor": 4,
    "ddp_backend": "gloo", "ddp_broadcast_buffers": True, "ddp_bucket_cap_mb": 10,
    "ddp_find_unused_parameters": True, "ddp_static_graph": True, "debug": "underflow_overflow",
    "disable_tqdm": True, "do_eval": True, "do_predict": True, "enable_jit_checkpoint": True,
    "eval_accumulation_steps": 2, "eval_delay": 1, "eval_do_concat_batches": False, "eval_on_start": True,
    "eval_use_gather_object": True, "fp16_full_eval": True, "full_determinism": True, "greater_is_better": True,
    "hub_always_push": True, "hub_model_id": "org/m", "hub_private_repo": True, "hub_revision": "dev",
    "hub_strategy": "checkpoint", "hub_token": "t", "ignore_data_skip": True, "include_for_metrics": ["inputs"],
    "include_num_input_tokens_seen": "all", "label_names": ["labels"], "label_smoothing_factor": 0.1,
    "length_column_name": "n", "liger_kernel_config": {"rope": True}, "load_best_model_at_end": True,
    "local_rank": 1, "log_level": "info", "log_level_replica": "error", "log_on_each_node": False,
    "logging_first_step": True, "logging_nan_inf_filter": False, "logging_strategy": "epoch",
    "metric_for_best_model": "loss", "neftune_noise_alpha": 5.0, "optim_args": "a=1",
    "optim_target_modules": ["q_proj"], "parallelism_config": {"dp_shard_size": 1}, "prediction_loss_only": True,
    "project": "p", "push_to_hub": True, "restore_callback_states_from_checkpoint": True, "run_name": "r",
    "save_on_each_node": True, "skip_memory_metrics": False, "tf32": True, "torch_compile": True,
    "torch_compile_backend": "eager", "torch_compile_mode": "default", "torch_empty_cache_steps": 5,
    "trackio_bucket_id": "b", "trackio_space_id": "s", "trackio_static_space_id": "ss",
    "train_sampling_strategy": "sequential", "use_cache": True, "use_cpu": True, "use_liger_kernel": True,
}
CHECKS |= {key: Effect(value, targ(key)) for key, value in TRAINING_VALUES.items() if key not in CHECKS}


def resolve(value: Any, env: Env) -> Any:
    """Replace <model>, <other>, <adapter>, ... placeholders with the fixture's paths."""
    if isinstance(value, dict):
        return {k: resolve(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, env) for v in value]
    if not isinstance(value, str):
        return value
    paths = {"<model>": env.model, "<other>": env.other_model, "<grown>": env.grown, "<adapter>": env.adapter,
             "<nested>": env.nested, "<data2>": env.other_data, "<bench>": env.benchmarks, "<root>": env.root}
    for mark, path in paths.items():
        value = value.replace(mark, str(path))
    return value


def build(env: Env, *layers: dict[str, Any]) -> RuntimeConfig:
    flat = base_keys(env)
    for layer in layers:
        flat |= resolve(layer, env)
    return config_from_flat(flat)


# ---------------------------------------------------------------------------------------------------- tests

def test_every_accepted_key_has_a_check():
    accepted = set(known_keys())
    assert sorted(accepted - set(CHECKS)) == [], "keys accepted without a check of their effect"
    assert sorted(set(CHECKS) - accepted) == [], "checks for keys the config does not accept"
    assert set(DEFAULT_ONLY) == set(REFUSED_VALUES)


@pytest.mark.parametrize("key", sorted(known_keys()))
def test_key_changes_behaviour_or_is_refused(key, env):
    check = CHECKS[key]
    if isinstance(check, Elsewhere):
        path, name = check.test.split("::")
        assert f"def {name}(" in (Path(__file__).resolve().parents[2] / path).read_text(), check.test
        return
    value = resolve(check.value, env)
    if isinstance(check, Refusal):
        pattern = check.match or key
        if check.at is None:
            with pytest.raises(ConfigError, match=pattern):
                build(env, check.base, {key: value})
            return
        check.at(build(env, check.base), env)  # the base config works
        with pytest.raises(Exception, match=pattern):
            check.at(build(env, check.base, {key: value}), env)
        return
    before = check.probe(build(env, check.base), env)
    after = check.probe(build(env, check.base, {key: value}), env)
    assert before != after, f"{key}: {value!r} changed nothing ({before!r})"


def test_key_table_covers_the_groups_and_transformers_keys():
    assert set(KEY_GROUP) | HF_TRAINING_KEYS <= set(known_keys())


def test_the_docs_key_lists_are_rendered_from_the_tables():
    from kubetune.config.key_lists import key_lists_markdown

    text = (Path(__file__).resolve().parents[2] / "docs" / "llamafactory.md").read_text()
    lists = text.split("<!-- keys:begin -->\n")[1].split("<!-- keys:end -->")[0]
    assert lists == key_lists_markdown()
