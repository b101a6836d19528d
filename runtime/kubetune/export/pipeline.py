"""The export pipeline: check inputs, merge, quantize, move into place, write the manifest last.

Work happens in a hidden sibling ``.<export_dir>.partial`` directory that is renamed onto ``export_dir`` when
complete, so an interrupted export never leaves a directory that looks finished. The renamed folder carries the
hidden marker ``.kubetune-export-unfinished`` until the manifest is written: a process killed between the rename
and the manifest leaves a folder that the next attempt recognises as its own leftover and replaces, while a folder
the export did not make (no marker, no manifest) is still never deleted without ``overwrite``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kubetune.artifacts import MANIFEST_NAME, ArtifactManifest, BaseModelInfo, CreatedBy, QuantInfo, write_manifest
from kubetune.config.export_args import ExportConfig
from kubetune.export.merge import ExportError, is_vision_base, merge_lora, refuse_quantized_base
from kubetune.export.quantize import check_available, quantize
from kubetune.model.merging import check_adapter

UNFINISHED = ".kubetune-export-unfinished"


def leftover(out: Path) -> bool:
    """True when ``out`` is an export that stopped after its rename and before its manifest."""
    return (out / UNFINISHED).is_file() and not (out / MANIFEST_NAME).exists()


def _prepare_output(out: Path, overwrite: bool) -> Path:
    occupied = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if occupied and not overwrite and not leftover(out):
        raise ExportError(f"{out} exists and is not empty; choose a new export_dir (or pass --overwrite)")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _move_into_place(src: Path, out: Path) -> None:
    (src / UNFINISHED).write_text("this export has not written its manifest yet; a new export replaces it\n")
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(src, out)


def run_export(config: ExportConfig, *, created_by: CreatedBy | None = None,
               strict_manifests: bool = False) -> ArtifactManifest:
    """Run one export described by ``config`` and return the manifest written into ``config.export_dir``.

    Args:
        config: what to export.
        created_by: provenance recorded in the manifest (the ModelExport object, when there is one).
        strict_manifests: require every adapter to carry a kubetune manifest (always true for custom resources;
            plain PEFT directories from other tools pass otherwise).
    Raises:
        ExportError, ArtifactError, QuantizationUnavailable: with a message saying what to change.
    """
    refuse_quantized_base(config.model_name_or_path)
    adapter_manifests = [check_adapter(a, strict=strict_manifests) for a in config.adapter_name_or_path]
    if config.quantization:
        if is_vision_base(config.model_name_or_path, config.trust_remote_code):
            raise ExportError(f"{config.model_name_or_path} is a vision-language model: kubetune exports it merged "
                              "but not quantized; leave export_quantization_bit unset")
        check_available(config.quantization[0])  # fail before the (long) merge, not after it
    out = Path(config.export_dir)
    staging = _prepare_output(out, config.overwrite)
    merged = staging / "merged"
    merge_lora(config.model_name_or_path, config.adapter_name_or_path, merged, config.infer_dtype,
               max_shard_size=config.shard_size, device=config.export_device, template=config.template,
               strict_manifests=strict_manifests, trust_remote_code=config.trust_remote_code)
    result = merged
    if config.quantization:
        method, bits = config.quantization
        result = staging / "quantized"
        quantize(method, merged, result, bits=bits, group_size=config.export_quantization_group_size,
                 calibration_file=config.export_quantization_dataset,
                 samples=config.export_quantization_nsamples, max_length=config.export_quantization_maxlen,
                 max_shard_size=config.shard_size)
    _move_into_place(result, out)
    shutil.rmtree(staging, ignore_errors=True)
    first = next((m for m in adapter_manifests if m is not None), None)
    base_uri = config.base_model_uri or (first.base_model.uri if first else None) or config.model_name_or_path
    manifest = ArtifactManifest(
        artifact_type="full-model",
        base_model=BaseModelInfo(uri=base_uri, revision=first.base_model.revision if first else None),
        stage=first.stage if first else None,
        method=first.method if first else None,
        quantization=QuantInfo(method=config.quantization[0], bits=config.quantization[1])
        if config.quantization else None,
        created_by=created_by or CreatedBy(),
    )
    written = write_manifest(out, manifest)  # hidden files are not part of the manifest
    (out / UNFINISHED).unlink()
    print(f"exported {out} ({len(written.files)} files; manifest written)")
    return written
