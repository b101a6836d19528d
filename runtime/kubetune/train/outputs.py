"""The output directory of a training run: where it resumes from, and what it holds at the end.

Layout of ``output_dir`` after a run::

    adapter_config.json + adapter_model.safetensors   (lora/qlora: PEFT layout)   or   config.json + model*.safetensors
    tokenizer files, kubetune-config.yaml (the effective config), trainer_state.json, train_results.json
    trainer_log.jsonl, training_loss.png, progress.json, runs/ (TensorBoard, when enabled)
    checkpoint-<step>/ ...                            (for resuming; not part of the artifact)
    kubetune-artifact.json                            (written last: its presence means the artifact is complete)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kubetune.artifacts import MANIFEST_NAME, ArtifactManifest, BaseModelInfo, CreatedBy, QuantInfo, write_manifest
from kubetune.train.callbacks import TRAINER_LOG, read_trainer_log
from kubetune.train.checkpoints import discard_incomplete, is_complete, last_complete_checkpoint, list_checkpoints
from kubetune.train.plot import LOSS_PNG, plot_loss
from kubetune.train.progress import PROGRESS_NAME

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig

CONFIG_NAME = "kubetune-config.yaml"
NOT_ARTIFACT = ("checkpoint-*",)  # kept for resuming, left out of the manifest


class OutputError(RuntimeError):
    """The output directory is not usable as configured (the message says which key to change)."""


def artifact_type(finetuning_type: str) -> str:
    return "lora-adapter" if finetuning_type in ("lora", "qlora") else "full-model"


def fresh_start(cfg: RuntimeConfig) -> bool:
    """True when this run must not resume: ``resume: never`` or ``overwrite_output_dir: true``."""
    return cfg.run.resume == "never" or cfg.training.overwrite_output_dir


def clean_output_dir(cfg: RuntimeConfig, output_dir: Path) -> list[Path]:
    """Prepare ``output_dir`` on the main process before any rank looks at it. Returns what was removed.

    A fresh start removes what an earlier run left (checkpoints, log, progress, manifest); otherwise only
    incomplete checkpoints go, so the step they were saving is written again from scratch.

    Raises OutputError when the directory already holds a finished artifact and ``overwrite_output_dir`` is off.
    """
    if (output_dir / MANIFEST_NAME).is_file() and not cfg.training.overwrite_output_dir:
        raise OutputError(f"output_dir: {output_dir} already holds a finished artifact ({MANIFEST_NAME}); "
                          "choose another output_dir or set overwrite_output_dir: true")
    if not fresh_start(cfg):
        return discard_incomplete(output_dir)
    removed = list_checkpoints(output_dir)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    for name in (MANIFEST_NAME, TRAINER_LOG, PROGRESS_NAME, LOSS_PNG):
        if (output_dir / name).is_file():
            (output_dir / name).unlink()
            removed.append(output_dir / name)
    return removed


def resume_checkpoint(cfg: RuntimeConfig, output_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``resume_from_checkpoint`` when given (it must be complete), else with
    ``resume: auto`` the last complete checkpoint in ``output_dir``, else None."""
    explicit = cfg.training.resume_from_checkpoint
    if explicit:
        path = Path(explicit)
        if not is_complete(path):
            raise OutputError(f"resume_from_checkpoint: {path} is not a complete checkpoint "
                              "(no trainer_state.json or completion marker)")
        return path
    if fresh_start(cfg):
        return None
    return last_complete_checkpoint(output_dir)


def manifest_for(cfg: RuntimeConfig, metrics: dict[str, float]) -> ArtifactManifest:
    """The artifact manifest of this run (files are hashed when it is written)."""
    run, method = cfg.run, cfg.method
    quant = QuantInfo(method="bnb", bits=method.quantization_bit) if method.quantization_bit else None
    return ArtifactManifest(
        artifact_type=artifact_type(method.finetuning_type),
        base_model=BaseModelInfo(uri=run.base_model_uri or cfg.model.model_name_or_path,
                                 revision=run.base_model_revision or cfg.model.model_revision),
        stage=cfg.stage,
        method=method.finetuning_type,
        quantization=quant,
        created_by=CreatedBy(kind=run.created_by_kind or "local", name=run.created_by_name,
                             namespace=run.created_by_namespace, uid=run.created_by_uid),
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
    )


def save_final(trainer: Any, cfg: RuntimeConfig, output_dir: Path, metrics: dict[str, float]) -> None:
    """Save the adapter or model with its tokenizer, the run's records, the loss curve, and the manifest last.

    Every rank must call this (FSDP and DeepSpeed gather the weights collectively); only the main process writes.
    """
    from kubetune.config import dump_config

    trainer.save_model(str(output_dir))
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return
    trainer.save_state()
    trainer.save_metrics("train", metrics)
    (output_dir / CONFIG_NAME).write_text(yaml.safe_dump(dump_config(cfg), sort_keys=False))
    if cfg.training.plot_loss:
        plot_loss(read_trainer_log(output_dir), output_dir / LOSS_PNG,
                  title=f"{cfg.stage} {cfg.method.finetuning_type}")
    write_manifest(output_dir, manifest_for(cfg, metrics), exclude=NOT_ARTIFACT)
