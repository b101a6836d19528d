"""FineTuneJob spec <-> RuntimeConfig: the one place where camelCase CR fields meet runtime keys.

:func:`train_pod_config` is the pod contract: the flat runtime config the operator mounts into the training pods
(``kubetune train FILE``) and the one ``kubetune run`` trains with, built by :func:`runtime_config_from_finetunejob`.
``finetunejob_from_runtime_config`` (used by ``kubetune convert``) is its inverse: what the spec cannot express
travels in ``extraArgs``. All are pure apart from the ``resolve`` callbacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from kubetune.api.errors import FieldError, field_errors
from kubetune.api.finetunejob import (
    DatasetSpec,
    FineTuneJob,
    FineTuneJobSpec,
    FreezeSpec,
    GrpoSpec,
    KtoSpec,
    LoraSpec,
    PpoSpec,
    PreferenceSpec,
    QuantizationSpec,
    TrainingSpec,
)
from kubetune.config.files import ConfigError
from kubetune.config.grpo_args import DEFAULT_FORMAT
from kubetune.config.loader import config_from_flat, dump_config
from kubetune.config.runtime import RuntimeConfig
from kubetune.uris import local_uri, path_to_uri, uri_to_path

Resolve = Callable[[str], str]
ResolveRef = Callable[[str, str], str]  # (kind, name) -> uri of that object's output

# Direct renames: CR block attribute -> runtime key, per block.
LORA_KEYS = {"rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout", "target": "lora_target",
             "additional_target": "additional_target", "rslora": "use_rslora", "dora": "use_dora",
             "pissa": "pissa_init", "loraplus_lr_ratio": "loraplus_lr_ratio"}
FREEZE_KEYS = {"trainable_layers": "freeze_trainable_layers", "trainable_modules": "freeze_trainable_modules",
               "extra_modules": "freeze_extra_modules"}
QUANT_KEYS = {"bits": "quantization_bit", "type": "quantization_type", "double_quant": "double_quantization"}
PREFERENCE_KEYS = {"beta": "pref_beta", "loss": "pref_loss", "ftx": "pref_ftx",
                   "label_smoothing": "dpo_label_smoothing", "simpo_gamma": "simpo_gamma"}
KTO_KEYS = {"beta": "pref_beta", "desirable_weight": "kto_chosen_weight",
            "undesirable_weight": "kto_rejected_weight", "ftx": "pref_ftx"}
PPO_KEYS = {"epochs": "ppo_epochs", "buffer_size": "ppo_buffer_size", "max_new_tokens": "max_new_tokens",
            "kl_coef": "ppo_kl_coef",
            "whiten_rewards": "ppo_whiten_rewards", "score_norm": "ppo_score_norm", "target_kl": "ppo_target"}
# spec.grpo.rewards -> reward_funcs is mapped on its own (a required field, no default to compare).
GRPO_KEYS = {"reward_weights": "reward_weights", "format_pattern": "reward_format_pattern",
             "reward_timeout_seconds": "reward_timeout", "num_generations": "num_generations",
             "max_new_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p", "beta": "beta",
             "epsilon": "epsilon", "num_iterations": "num_iterations", "loss_type": "loss_type",
             "scale_rewards": "scale_rewards"}
TRAINING_KEYS = {
    "epochs": "num_train_epochs", "max_steps": "max_steps", "learning_rate": "learning_rate",
    "lr_scheduler": "lr_scheduler_type", "warmup_ratio": "warmup_ratio", "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm", "per_device_batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps", "cutoff_len": "cutoff_len",
    "packing": "packing", "neat_packing": "neat_packing", "train_on_prompt": "train_on_prompt",
    "mask_history": "mask_history", "val_size": "val_size", "max_samples": "max_samples",
    "mix_strategy": "mix_strategy", "interleave_probs": "interleave_probs", "save_steps": "save_steps",
    "save_total_limit": "save_total_limit", "logging_steps": "logging_steps", "eval_steps": "eval_steps",
    "seed": "seed", "precision": "precision", "gradient_checkpointing": "gradient_checkpointing",
    "optimizer": "optim",
}
FSDP_DEFAULT, FSDP_OFFLOAD = "full_shard auto_wrap", "full_shard auto_wrap offload"


def _renamed(block: Any, table: dict[str, str]) -> dict[str, Any]:
    if block is None:
        return {}
    return {key: getattr(block, attr) for attr, key in table.items() if getattr(block, attr) is not None}


def _source_path(source: Any, resolve: Resolve, resolve_ref: ResolveRef | None, where: str) -> str:
    """A model source (uri or reference) as the local path the runtime opens."""
    if source.uri:
        return resolve(source.uri)
    kind, ref = ("FineTuneJob", source.fine_tune_job_ref) if source.fine_tune_job_ref else \
        ("ModelExport", source.model_export_ref)
    if ref is None or resolve_ref is None:
        raise ConfigError([FieldError(where, f"{kind} references must be resolved to a uri before training")])
    return resolve(resolve_ref(kind, ref.name))


def _dataset_name(uri: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", PurePosixPath(uri.split("://", 1)[-1].rstrip("/")).stem).strip("_")
    name, n = stem or "dataset", 2
    while name in taken:
        name, n = f"{stem}_{n}", n + 1
    taken.add(name)
    return name


def _dataset_entry(ds: DatasetSpec, resolve: Resolve) -> dict[str, Any]:
    entry: dict[str, Any] = {"formatting": ds.format, "ranking": ds.ranking, "split": ds.split}
    assert ds.uri is not None
    if ds.uri.startswith("hf://"):
        entry["hf_hub_url"] = ds.uri.removeprefix("hf://")
    else:
        entry["file_name"] = resolve(ds.uri)
    for key in ("num_samples", "revision"):
        if getattr(ds, key) is not None:
            entry[key] = getattr(ds, key)
    for key in ("columns", "tags"):
        block = getattr(ds, key)
        if block is not None:
            entry[key] = block.model_dump(exclude_none=True)
    return entry


def _datasets(spec: FineTuneJobSpec, resolve: Resolve) -> dict[str, Any]:
    inline: dict[str, Any] = {}
    registries: set[str] = set()
    taken: set[str] = set()
    out: dict[str, Any] = {}
    for key, group in (("dataset", spec.datasets), ("eval_dataset", spec.eval_datasets or [])):
        names = []
        for ds in group:
            if ds.name:
                names.append(ds.name)
                registries.add(str(ds.registry_uri))
                continue
            name = _dataset_name(str(ds.uri), taken)
            inline[name] = _dataset_entry(ds, resolve)
            names.append(name)
        if names:
            out[key] = names
    if len(registries) > 1:
        raise ConfigError([FieldError("spec.datasets", "datasets given by name must share one registryUri")])
    if registries:
        out["dataset_dir"] = resolve(registries.pop())
    if inline:
        out["dataset_info"] = inline
    return out


def _distributed(spec: FineTuneJobSpec, extra: dict[str, Any]) -> dict[str, Any]:
    dist = spec.distributed
    out: dict[str, Any] = {"strategy": dist.strategy}
    if dist.strategy == "deepspeed" and (dist.zero_stage or dist.offload):
        out["deepspeed"] = f"ds_z{dist.zero_stage or 3}" + ("_offload" if dist.offload else "")
    if dist.strategy == "fsdp" and "fsdp" not in extra:
        out["fsdp"] = FSDP_OFFLOAD if dist.offload else FSDP_DEFAULT
    return out


def _evaluation(spec: FineTuneJobSpec, resolve: Resolve) -> dict[str, Any]:
    """spec.evaluation as the runtime's eval_benchmarks (task folders resolved) and eval_baseline."""
    if spec.evaluation is None:
        return {}
    benchmarks = [{"task": b.task, "task_dir": resolve(b.task_dir), "n_shot": b.n_shot, "lang": b.lang,
                   "batch_size": b.batch_size} for b in spec.evaluation.benchmarks]
    return {"eval_benchmarks": benchmarks, "eval_baseline": spec.evaluation.baseline}


def spec_to_flat(job: FineTuneJob, *, output_dir: str, resolve: Resolve,
                 resolve_ref: ResolveRef | None = None) -> dict[str, Any]:
    """The flat runtime keys a FineTuneJob spec sets (extraArgs not included)."""
    spec, meta = job.spec, job.metadata
    flat: dict[str, Any] = {
        "stage": spec.stage, "finetuning_type": spec.method, "output_dir": output_dir, "resume": spec.resume,
        "model_name_or_path": _source_path(spec.model, resolve, resolve_ref, "spec.model"),
        "trust_remote_code": spec.model.trust_remote_code,
        "created_by_kind": job.kind, "created_by_name": meta.get("name"),
        "created_by_namespace": meta.get("namespace"), "created_by_uid": meta.get("uid"),
        "base_model_uri": spec.model.uri, "base_model_revision": spec.model.revision,
        "template": spec.model.template, "model_revision": spec.model.revision,
    }
    flat.update(_datasets(spec, resolve))
    flat.update(_renamed(spec.lora, LORA_KEYS) | _renamed(spec.freeze, FREEZE_KEYS))
    flat.update(_renamed(spec.quantization, QUANT_KEYS))
    flat.update(_renamed(spec.preference, PREFERENCE_KEYS) | _renamed(spec.kto, KTO_KEYS))
    if spec.preference and spec.preference.ref_model:
        flat["ref_model"] = _source_path(spec.preference.ref_model, resolve, resolve_ref, "spec.preference.refModel")
    if spec.ppo:
        flat.update(_renamed(spec.ppo, PPO_KEYS))
        rm = spec.ppo.reward_model
        if rm is not None:
            flat["reward_model"] = rm.url or _source_path(rm, resolve, resolve_ref, "spec.ppo.rewardModel")
            # A model path may hold a reward adapter or a full reward model; the runtime tells them apart.
            flat["reward_model_type"] = "api" if rm.url else "full"
    if spec.grpo:
        flat.update(_renamed(spec.grpo, GRPO_KEYS) | {"reward_funcs": list(spec.grpo.rewards)})
    flat.update(_renamed(spec.training, TRAINING_KEYS))
    if spec.training.eval_steps is not None:
        flat["eval_strategy"] = "steps"
    flat.update(_distributed(spec, spec.extra_args or {}))
    flat.update(_evaluation(spec, resolve))
    return {k: v for k, v in flat.items() if v is not None}


def runtime_config_from_finetunejob(job: FineTuneJob, *, output_dir: str, resolve: Resolve,
                                    resolve_ref: ResolveRef | None = None) -> RuntimeConfig:
    """The runtime config a FineTuneJob trains with.

    Args:
        job: the parsed FineTuneJob.
        output_dir: the concrete output directory (the operator's ``<output.uri>/<name>-<uid8>/``, resolved).
        resolve: turns a URI (pvc://, file://, s3://, hf://) into the path or id the runtime opens.
        resolve_ref: turns (kind, name) of a referenced FineTuneJob/ModelExport into its output URI; without it
            references are an error.
    Raises:
        ConfigError: with paths into the spec; extraArgs keys are validated as runtime keys and may not repeat
            a key the spec already sets.
    """
    flat = spec_to_flat(job, output_dir=output_dir, resolve=resolve, resolve_ref=resolve_ref)
    extra = dict(job.spec.extra_args or {})
    clashes = [FieldError(f"spec.extraArgs.{k}", f"{k} is already set by the spec; set it there")
               for k in sorted(set(extra) & set(flat))]
    if clashes:
        raise ConfigError(clashes)
    try:
        return config_from_flat({**flat, **extra}, file=f"FineTuneJob {job.metadata.get('name', '')}".strip())
    except ConfigError as exc:
        raise ConfigError([
            FieldError(f"spec.extraArgs.{e.path}" if e.path.split(".")[0] in extra else e.path, e.message, e.file)
            for e in exc.errors
        ]) from None


def train_pod_config(job: FineTuneJob, *, output_dir: str, resolve: Resolve,
                     resolve_ref: ResolveRef | None = None) -> dict[str, Any]:
    """What a FineTuneJob's pods run: the flat runtime config file ``kubetune train FILE`` reads.

    The operator renders it into the pods' ConfigMap with in-pod paths; ``kubetune run`` builds it with local paths
    and trains with it as ``kubetune train`` would (:func:`~kubetune.config.loader.config_from_flat`). Arguments and
    errors as :func:`runtime_config_from_finetunejob`.
    """
    return dump_config(runtime_config_from_finetunejob(job, output_dir=output_dir, resolve=resolve,
                                                       resolve_ref=resolve_ref))


# ---- inverse: a RuntimeConfig (for example from a LLaMA-Factory YAML) as a FineTuneJob ----

# Keys the operator fills in per run; they never appear in a spec.
_PER_RUN_KEYS = frozenset({"output_dir", "created_by_kind", "created_by_name", "created_by_namespace",
                           "created_by_uid", "base_model_uri", "base_model_revision", "progress_file"})


def _invert(flat: dict[str, Any], table: dict[str, str], block: type[BaseModel]) -> dict[str, Any]:
    out = {}
    for attr, key in table.items():
        if key in flat and (flat[key] is not None or type(None) in get_args(block.model_fields[attr].annotation)):
            out[attr] = flat[key]
    return out


def _inverse_datasets(cfg: RuntimeConfig) -> dict[str, Any]:
    data, out = cfg.data, {}
    inline = data.dataset_info or {}
    for spec_key, names in (("datasets", data.dataset or []), ("eval_datasets", data.eval_dataset or [])):
        items = []
        for name in names:
            attr = inline.get(name)
            if attr is None:
                items.append({"name": name, "registry_uri": path_to_uri(data.dataset_dir),
                              "ranking": cfg.stage in ("rm", "dpo")})
                continue
            if attr.ms_hub_url:
                raise ConfigError([FieldError(f"dataset_info.{name}", "ModelScope datasets have no FineTuneJob uri")])
            uri = f"hf://{attr.hf_hub_url}" if attr.hf_hub_url else \
                path_to_uri(str(Path(data.dataset_dir) / str(attr.file_name)))
            item = attr.model_dump(include={"ranking", "split", "num_samples", "revision", "columns", "tags"},
                                   exclude_none=True)
            items.append({"uri": uri, "format": attr.formatting, **item})
        if items:
            out[spec_key] = items
    return out


def _inverse_spec(cfg: RuntimeConfig, flat: dict[str, Any], output_uri: str | None) -> dict[str, Any]:
    stage, method = cfg.stage, cfg.method.finetuning_type
    uri = cfg.run.base_model_uri or path_to_uri(cfg.model.model_name_or_path)
    revision = cfg.run.base_model_revision or (None if cfg.model.model_revision == "main" else cfg.model.model_revision)
    spec: dict[str, Any] = {
        "model": {"uri": uri, "revision": revision, "template": cfg.data.template,
                  "trust_remote_code": cfg.model.trust_remote_code},
        "stage": stage, "method": method, "resume": cfg.run.resume,
        "output": {"uri": output_uri or local_uri(cfg.training.output_dir).rstrip("/") + "/"},
        **_inverse_datasets(cfg),
    }
    if method in ("lora", "qlora"):
        spec["lora"] = _invert(flat, LORA_KEYS, LoraSpec)
    if method == "freeze":
        spec["freeze"] = _invert(flat, FREEZE_KEYS, FreezeSpec)
    if method == "qlora":
        spec["quantization"] = _invert(flat, QUANT_KEYS, QuantizationSpec)
    if stage == "dpo":
        spec["preference"] = _invert(flat, PREFERENCE_KEYS, PreferenceSpec)
        if cfg.preference.ref_model:
            spec["preference"]["ref_model"] = {"uri": path_to_uri(cfg.preference.ref_model)}
    if stage == "kto":
        spec["kto"] = _invert(flat, KTO_KEYS, KtoSpec)
    if stage == "ppo":
        rm = cfg.preference.reward_model or ""
        spec["ppo"] = {**_invert(flat, PPO_KEYS, PpoSpec),
                       "reward_model": {"url": rm} if rm.startswith("http") else {"uri": path_to_uri(rm)}}
    if stage == "grpo":
        spec["grpo"] = {**_invert(flat, GRPO_KEYS, GrpoSpec), "rewards": list(cfg.grpo.reward_funcs)}
        if "format" not in cfg.grpo.reward_funcs or cfg.grpo.reward_format_pattern == DEFAULT_FORMAT:
            spec["grpo"].pop("format_pattern")  # unused or the default (anything else travels in extraArgs)
    training = _invert(flat, TRAINING_KEYS, TrainingSpec)
    if cfg.training.max_steps <= 0:
        training.pop("max_steps")
    if cfg.training.eval_strategy != "steps":
        training.pop("eval_steps")
    spec["training"] = training
    preset = cfg.distributed.deepspeed_preset
    spec["distributed"] = {"strategy": cfg.distributed.strategy,
                           "zero_stage": preset[0] if preset and preset[0] in (2, 3) else None,
                           "offload": bool(preset and preset[1]) or cfg.distributed.fsdp == FSDP_OFFLOAD}
    return spec


def finetunejob_from_runtime_config(cfg: RuntimeConfig, name: str, *, namespace: str | None = None,
                                    output_uri: str | None = None) -> FineTuneJob:
    """The FineTuneJob that trains like ``cfg``: what the spec has no field for goes into ``extraArgs``.

    ``runtime_config_from_finetunejob`` of the result (with file:// and hf:// resolved locally) equals ``cfg``
    up to per-run keys (output_dir, created_by_*), relative paths made absolute, and an unset
    ``save_total_limit`` (keep every checkpoint), which the spec cannot express: it keeps its default of 3.

    Raises:
        ConfigError: when a value cannot be expressed in a FineTuneJob (for example a rank above the CRD limit).
    """
    flat = dump_config(cfg, exclude_none=False, comma_lists=False)
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    spec = _inverse_spec(cfg, flat, output_uri)
    try:
        job = FineTuneJob.model_validate({"metadata": metadata, "spec": spec})
    except ValidationError as exc:
        raise ConfigError(field_errors(exc)) from None
    extra = _extra_args(cfg, job)
    if extra:
        job = job.model_copy(update={"spec": job.spec.model_copy(update={"extra_args": extra})})
    return job


def _extra_args(cfg: RuntimeConfig, job: FineTuneJob) -> dict[str, Any]:
    """Keys whose value in ``cfg`` differs from what the spec alone gives (defaults and derived values)."""
    covered = spec_to_flat(job, output_dir=cfg.training.output_dir, resolve=uri_to_path)
    try:
        baseline = dump_config(runtime_config_from_finetunejob(job, output_dir=cfg.training.output_dir,
                                                               resolve=uri_to_path), comma_lists=False)
    except ConfigError:
        baseline = _default_flat(cfg.stage)
    skip = _PER_RUN_KEYS | covered.keys() | ({"dataset_dir"} if "dataset_info" in covered else set())
    return {k: v for k, v in dump_config(cfg, comma_lists=False).items()
            if k not in skip and v != baseline.get(k, _MISSING)}


_MISSING = object()


def _default_flat(stage: str) -> dict[str, Any]:
    minimal = RuntimeConfig.model_validate({"stage": stage, "model": {"model_name_or_path": "-"},
                                            "data": {"dataset": ["-"]}, "training": {"output_dir": "-"},
                                            **({"preference": {"reward_model": "-"}} if stage == "ppo" else {}),
                                            **({"grpo": {"reward_funcs": ["exact_match"]}} if stage == "grpo" else {})})
    return dump_config(minimal, comma_lists=False)
