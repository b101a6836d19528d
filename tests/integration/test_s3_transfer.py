"""s3:// downloads and uploads against a real S3 server (SeaweedFS): verified, resumable, manifest last."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys

import pytest

from kubetune.artifacts import MANIFEST_NAME
from kubetune.storage import s3 as store
from kubetune.storage.staging import Mirror, stage_in, stage_out


@pytest.fixture
def s3(object_store, monkeypatch):
    for key, value in object_store.env().items():
        monkeypatch.setenv(key, value)
    return store.client()


@pytest.fixture
def bucket(object_store, request) -> str:
    return object_store.create_bucket(f"t-{abs(hash(request.node.nodeid)) % 10**8}")


class Recording:
    """The real client, with the calls kubetune.storage makes written down (operation, key, offset)."""

    def __init__(self, client):
        self.client = client
        self.calls: list[tuple[str, str, int]] = []

    def __getattr__(self, name):
        return getattr(self.client, name)

    def get_object(self, bucket, key, offset=0, **kwargs):
        self.calls.append(("get", key, offset))
        return self.client.get_object(bucket, key, offset=offset, **kwargs)

    def put_object(self, bucket, key, data, length, **kwargs):
        self.calls.append(("put", key, length))
        return self.client.put_object(bucket, key, data, length, **kwargs)

    def keys(self, operation: str) -> list[str]:
        return [key for op, key, _ in self.calls if op == operation]


@pytest.fixture
def recording(s3) -> Recording:
    return Recording(s3)


def _put(s3, bucket: str, key: str, body: bytes) -> None:
    s3.put_object(bucket, key, io.BytesIO(body), len(body))


def _read(s3, bucket: str, key: str) -> bytes:
    response = s3.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def test_download_folder_and_single_object(s3, bucket, tmp_path):
    _put(s3, bucket, "data/a.jsonl", b'{"a": 1}\n')
    _put(s3, bucket, "data/sub/b.jsonl", b'{"b": 2}\n')
    _put(s3, bucket, "data-other/c.jsonl", b"not under data/")
    lines: list[str] = []

    folder = store.download(f"s3://{bucket}/data", tmp_path / "data", s3=s3, say=lines.append)
    single = store.download(f"s3://{bucket}/data/sub/b.jsonl", tmp_path / "one.jsonl", s3=s3)

    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == \
        ["a.jsonl", "sub/b.jsonl"]
    assert single.read_bytes() == b'{"b": 2}\n'
    assert lines[-1] == f"downloaded s3://{bucket}/data: 2 file(s), 0.0 MB"


def test_download_skips_files_already_there_and_resumes_a_part_file(s3, recording, bucket, tmp_path):
    body = os.urandom(300_000)
    _put(s3, bucket, "m/weights.bin", body)
    dest = tmp_path / "m"
    dest.mkdir()
    (dest / "weights.bin.part").write_bytes(body[:100_000])

    store.download(f"s3://{bucket}/m", dest, s3=recording)
    store.download(f"s3://{bucket}/m", dest, s3=recording)  # complete and verified: nothing fetched again

    assert (dest / "weights.bin").read_bytes() == body
    assert not (dest / "weights.bin.part").exists()
    assert recording.calls == [("get", "m/weights.bin", 100_000)]


def test_a_part_file_that_does_not_match_the_object_is_refused_and_removed(s3, bucket, tmp_path):
    body = os.urandom(50_000)
    _put(s3, bucket, "m/weights.bin", body)
    (tmp_path / "weights.bin.part").write_bytes(b"x" * 10_000)  # resumed from, so the result cannot verify

    with pytest.raises(store.StorageError, match="does not match the object's size/ETag"):
        store.download(f"s3://{bucket}/m/weights.bin", tmp_path / "weights.bin", s3=s3)
    assert not (tmp_path / "weights.bin.part").exists()
    store.download(f"s3://{bucket}/m/weights.bin", tmp_path / "weights.bin", s3=s3)  # a rerun starts over
    assert hashlib.sha256((tmp_path / "weights.bin").read_bytes()).digest() == hashlib.sha256(body).digest()


def test_upload_writes_the_manifest_last_and_skips_what_is_already_there(recording, bucket, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / MANIFEST_NAME).write_text("{}")
    (out / "adapter_model.safetensors").write_bytes(os.urandom(20_000))
    (out / "checkpoint-2" / "state.json").write_text("{}")
    (out / "zz.bin.part").write_bytes(b"half")  # an unfinished download never goes up
    written = [MANIFEST_NAME, "adapter_model.safetensors", "checkpoint-2/state.json"]

    keys = store.upload(out, f"s3://{bucket}/team/run-1", s3=recording, last=MANIFEST_NAME)
    puts = recording.keys("put")
    assert puts[-1] == f"team/run-1/{MANIFEST_NAME}"
    assert sorted(puts) == sorted(keys) == sorted(f"team/run-1/{name}" for name in written)
    recording.calls.clear()
    (out / "checkpoint-2" / "state.json").write_text('{"step": 2}')
    store.upload(out, f"s3://{bucket}/team/run-1", s3=recording, last=MANIFEST_NAME)
    assert recording.keys("put") == ["team/run-1/checkpoint-2/state.json"]


def test_large_files_go_up_in_parts_and_come_back_intact(s3, bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PART_SIZE", 5 * 1024 * 1024)  # S3's smallest part
    body = os.urandom(11 * 1024 * 1024)
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "model.safetensors").write_bytes(body)

    store.upload(tmp_path / "up", f"s3://{bucket}/big", s3=s3)
    store.download(f"s3://{bucket}/big", tmp_path / "down", s3=s3)

    assert s3.stat_object(bucket, "big/model.safetensors").etag.strip('"').endswith("-3")  # three parts
    assert (tmp_path / "down" / "model.safetensors").read_bytes() == body


def test_errors_name_the_location(s3, tmp_path):
    with pytest.raises(store.StorageError, match=r"s3://no-such-bucket-kt/x: the bucket does not exist"):
        store.download("s3://no-such-bucket-kt/x", tmp_path / "x", s3=s3)


def test_staging_maps_uris_into_the_mirror_and_back(s3, bucket, tmp_path):
    _put(s3, bucket, "data/train.jsonl", b"{}\n")
    mirror = Mirror(tmp_path / "mirror")
    [local] = stage_in(mirror, [f"s3://{bucket}/data/train.jsonl", "pvc://x/y", None], say=lambda _: None)
    assert local == tmp_path / "mirror" / bucket / "data" / "train.jsonl"
    out = mirror.path(f"s3://{bucket}/out/run-1")
    out.mkdir(parents=True)
    (out / MANIFEST_NAME).write_text("{}")
    assert stage_out(mirror, f"s3://{bucket}/out/run-1", say=lambda _: None) == [f"out/run-1/{MANIFEST_NAME}"]


def test_stage_command_downloads_runs_and_uploads_only_after_success(object_store, s3, bucket, tmp_path):
    _put(s3, bucket, "in/prompt.txt", b"hello")
    root = tmp_path / "mirror"
    script = ("import pathlib, sys; root = pathlib.Path(sys.argv[1]); "
              "text = (root / sys.argv[2] / 'in/prompt.txt').read_text(); "
              "(root / sys.argv[2] / 'out/run-1/answer.txt').write_text(text.upper()); sys.exit(int(sys.argv[3]))")
    env = {**os.environ, **object_store.env()}

    def stage(code: int, run: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kubetune.cli.main", "stage", "--root", str(root), "--in",
             f"s3://{bucket}/in/prompt.txt", "--out", f"s3://{bucket}/{run}", "--", sys.executable, "-c",
             script.replace("out/run-1", run), str(root), bucket, str(code)],
            env=env, capture_output=True, text=True, timeout=120)

    failed = stage(3, "out/failed")
    ok = stage(0, "out/run-1")

    assert failed.returncode == 3
    assert store.list_objects(s3, f"s3://{bucket}/out/failed") == []
    assert ok.returncode == 0, ok.stderr
    assert _read(s3, bucket, "out/run-1/answer.txt") == b"HELLO"
    assert f"uploaded s3://{bucket}/out/run-1: 1 file(s)" in ok.stdout
