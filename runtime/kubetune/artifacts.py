"""The artifact contract: every producer writes ``kubetune-artifact.json`` last, into a fresh directory.

The manifest says what the directory holds (a LoRA adapter or a full model), which base model it belongs to, how
it was made, and the sha256 of every file, so a consumer can check before doing any work. It is written
atomically (temp file + rename) after all other files, so its presence means the artifact is complete.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

import kubetune

MANIFEST_NAME = "kubetune-artifact.json"


class ArtifactError(RuntimeError):
    """A missing or mismatching artifact; the message says what was expected and what to do."""


class BaseModelInfo(BaseModel):
    uri: str | None = Field(None, description="URI or local path of the base model.")
    revision: str | None = None


class QuantInfo(BaseModel):
    method: str
    bits: int | None = None


class CreatedBy(BaseModel):
    kind: str = "local"
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None


class ArtifactManifest(BaseModel):
    """Contents of kubetune-artifact.json."""

    artifact_type: Literal["lora-adapter", "full-model"]
    base_model: BaseModelInfo = Field(default_factory=BaseModelInfo)
    stage: str | None = None
    method: str | None = None
    quantization: QuantInfo | None = None
    created_by: CreatedBy = Field(default_factory=CreatedBy)
    created_at: str | None = None
    kubetune_version: str = kubetune.__version__
    metrics: dict[str, float] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict, description="Relative path -> sha256.")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(directory: str | Path, manifest: ArtifactManifest, exclude: Sequence[str] = ()) -> ArtifactManifest:
    """Hash every file under ``directory`` and write the manifest last. Returns the manifest written.

    ``exclude`` holds glob patterns for top-level entries that are not part of the artifact (for example the
    ``checkpoint-*`` folders a training run keeps for resuming).
    """
    root = Path(directory)
    files = {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")
        and not any(fnmatch.fnmatch(p.relative_to(root).parts[0], pattern) for pattern in exclude)
    }
    done = manifest.model_copy(update={"files": files, "created_at": datetime.now(UTC).isoformat(timespec="seconds")})
    atomic_write_text(root / MANIFEST_NAME, done.model_dump_json(indent=2) + "\n")
    return done


def read_manifest(directory: str | Path) -> ArtifactManifest:
    """Read a directory's manifest. Raises ArtifactError when it is missing or unreadable."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(
            f"{directory}: no {MANIFEST_NAME}; the producer did not finish (or this is not a kubetune artifact)"
        )
    try:
        return ArtifactManifest.model_validate(json.loads(path.read_text()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest: {exc}") from exc


def check_artifact(directory: str | Path, *, expect_type: str | None = None, base_model: str | None = None,
                   verify_files: bool = False) -> ArtifactManifest:
    """Read and check a manifest before using an artifact.

    Raises ArtifactError when the type differs from ``expect_type``, the recorded base model differs from
    ``base_model`` (adapter for another base), or (with ``verify_files``) a file is missing or changed.
    """
    manifest = read_manifest(directory)
    if expect_type and manifest.artifact_type != expect_type:
        raise ArtifactError(f"{directory}: expected a {expect_type} artifact, found {manifest.artifact_type}")
    if base_model and manifest.base_model.uri and manifest.base_model.uri != base_model:
        raise ArtifactError(
            f"{directory}: adapter was trained on {manifest.base_model.uri}, not {base_model}; "
            "serve it with its own base model"
        )
    if verify_files:
        root = Path(directory)
        for rel, digest in manifest.files.items():
            if not (root / rel).is_file() or sha256_file(root / rel) != digest:
                raise ArtifactError(f"{root / rel}: missing or changed since the manifest was written")
    return manifest
