"""Artifact manifests and URI resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.artifacts import (
    MANIFEST_NAME,
    ArtifactError,
    ArtifactManifest,
    BaseModelInfo,
    check_artifact,
    read_manifest,
    write_manifest,
)
from kubetune.uris import UriError, UriResolver


def _artifact(tmp_path: Path, kind: str = "lora-adapter") -> Path:
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.json").write_text("{}")
    write_manifest(tmp_path, ArtifactManifest(artifact_type=kind, base_model=BaseModelInfo(uri="hf://org/base")))
    return tmp_path


def test_manifest_lists_every_file_with_its_hash(tmp_path):
    manifest = read_manifest(_artifact(tmp_path))
    assert set(manifest.files) == {"adapter_model.safetensors", "sub/x.json"}
    assert all(len(h) == 64 for h in manifest.files.values())
    assert manifest.created_at


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match=MANIFEST_NAME):
        read_manifest(tmp_path)


def test_type_and_base_model_mismatch_are_rejected(tmp_path):
    _artifact(tmp_path)
    with pytest.raises(ArtifactError, match="expected a full-model"):
        check_artifact(tmp_path, expect_type="full-model")
    with pytest.raises(ArtifactError, match="trained on hf://org/base"):
        check_artifact(tmp_path, base_model="hf://org/other")
    assert check_artifact(tmp_path, expect_type="lora-adapter", base_model="hf://org/base").artifact_type


def test_changed_file_fails_verification(tmp_path):
    _artifact(tmp_path)
    (tmp_path / "sub" / "x.json").write_text('{"changed": true}')
    with pytest.raises(ArtifactError, match="changed"):
        check_artifact(tmp_path, verify_files=True)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///data/x.jsonl", "/data/x.jsonl"),
        ("pvc://models/team/run-1", "/pvc/models/team/run-1"),
        ("hf://Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B"),
        ("data/train.jsonl", "/base/data/train.jsonl"),
        ("file://data/train.jsonl", "/base/data/train.jsonl"),
        ("file://./data/train.jsonl", "/base/data/train.jsonl"),
        ("/abs/train.jsonl", "/abs/train.jsonl"),
    ],
)
def test_uri_resolution(uri, expected):
    assert UriResolver(pvc_root=Path("/pvc"), base_dir=Path("/base")).resolve(uri) == expected


@pytest.mark.parametrize("uri", ["ftp://host/x", "pvc:///nopath", "s3://bucket/../x", "s3://"])
def test_unresolvable_uris_raise(uri):
    with pytest.raises(UriError):
        UriResolver().resolve(uri)


def test_s3_uris_map_into_the_mirror():
    assert UriResolver().resolve("s3://models/team/run-1/") == "/mnt/s3/models/team/run-1"
    assert UriResolver(s3_root=Path("/w/s3")).resolve("s3://data/a.jsonl") == "/w/s3/data/a.jsonl"
    with pytest.raises(UriError, match="there is no local mirror here"):
        UriResolver(s3_root=None).resolve("s3://data/a.jsonl")


def test_join_keeps_scheme():
    assert UriResolver().join("pvc://models/team/", "run-1a2b3c4d") == "pvc://models/team/run-1a2b3c4d"
