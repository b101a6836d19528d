"""`kubetune run` with s3:// model, data and outputs against a real S3 server (SeaweedFS): a FineTuneJob trains
from the bucket and uploads its adapter, a ModelExport merges it from the bucket and uploads the merged model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.artifacts import MANIFEST_NAME, check_artifact
from kubetune.storage import s3 as store
from tests.builders import make_finetunejob, make_modelexport

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _upload_tree(client, bucket: str, prefix: str, folder: Path) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        client.put_object(bucket, f"{prefix}/{path.relative_to(folder).as_posix()}", io.BytesIO(data), len(data))


def test_finetunejob_and_modelexport_read_and_write_s3(object_store, tiny_llama, tmp_path, monkeypatch):
    bucket = object_store.create_bucket("kt-local-run")
    client = object_store.client()
    _upload_tree(client, bucket, "base/tiny", tiny_llama)
    rows = [{"instruction": f"Add {i % 7} and {i % 5}.", "output": str(i % 7 + i % 5)} for i in range(16)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    client.put_object(bucket, "data/sums.jsonl", io.BytesIO(data), len(data))
    storage = {"s3": {"endpoint": object_store.endpoint}}  # credentials: the shell's AWS_* variables
    job = make_finetunejob(
        "sums", model={"uri": f"s3://{bucket}/base/tiny", "template": "qwen"},
        datasets=[{"uri": f"s3://{bucket}/data/sums.jsonl", "format": "alpaca"}],
        lora={"rank": 4, "target": ["all"]}, storage=storage,
        training={"maxSteps": 2, "perDeviceBatchSize": 2, "cutoffLen": 32, "gradientCheckpointing": False},
        output={"uri": f"s3://{bucket}/runs/"})
    merged = make_modelexport("merged", source={"fineTuneJobRef": {"name": "sums"}}, merge=True, storage=storage,
                              output={"uri": f"s3://{bucket}/exports/"})
    files = tmp_path / "resources.yaml"
    files.write_text(yaml.safe_dump_all([job, merged]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **object_store.env()}
    env.pop("AWS_ENDPOINT_URL_S3")  # the endpoint comes from spec.storage.s3.endpoint
    work = tmp_path / "work"

    done = subprocess.run([sys.executable, "-m", "kubetune.cli.main", "run", str(files), "--work-dir", str(work),
                           "--no-progress"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = {kind: json.loads(next((work / "objects" / "default" / kind).glob("*.json")).read_text())
               for kind in ("FineTuneJob", "ModelExport")}
    adapter_uri = records["FineTuneJob"]["status"]["output"]["uri"]
    export_uri = records["ModelExport"]["status"]["output"]["uri"]
    assert adapter_uri.startswith(f"s3://{bucket}/runs/sums-") and export_uri.startswith(f"s3://{bucket}/exports/")
    assert records["ModelExport"]["status"]["resolvedSource"]["uri"] == adapter_uri
    assert f"downloaded s3://{bucket}/base/tiny:" in done.stdout
    assert f"uploaded {adapter_uri.rstrip('/')}:" in done.stdout

    # what a consumer elsewhere sees: complete artifacts, fetched fresh from the bucket
    for key, value in object_store.env().items():
        monkeypatch.setenv(key, value)
    s3 = store.client()
    for uri, kind in ((adapter_uri, "lora-adapter"), (export_uri, "full-model")):
        fresh = store.download(uri.rstrip("/"), tmp_path / "fresh" / kind, s3=s3, say=lambda _: None)
        assert (fresh / MANIFEST_NAME).is_file()
        assert check_artifact(fresh, expect_type=kind, verify_files=True).artifact_type == kind
