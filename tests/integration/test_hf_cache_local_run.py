"""hf:// models through a Hugging Face cache: a FineTuneJob trains from ``hf://org/name`` at a pinned revision
with no network (``HF_HUB_OFFLINE=1``), from a cache seeded beforehand, the way a cluster's shared cache claim
(``spec.storage.cacheClaim``, mounted as ``HF_HUB_CACHE``) serves later jobs in a namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.artifacts import read_manifest
from tests.builders import make_finetunejob

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
REPO, COMMIT = "kubetune-test/tiny-llama", "0123456789abcdef0123456789abcdef01234567"


def seed_cache(cache: Path, model: Path, repo: str, revision: str) -> None:
    """The hub cache layout huggingface_hub reads offline: refs/<revision> names a snapshot folder."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(model, folder / "snapshots" / COMMIT)
    (folder / "refs").mkdir()
    (folder / "refs" / revision).write_text(COMMIT)


def test_a_pinned_hub_model_trains_offline_from_the_cache(tiny_llama, tmp_path):
    cache = tmp_path / "hub-cache"
    seed_cache(cache, tiny_llama, REPO, "v1")  # no refs/main: only the pinned revision resolves
    rows = [{"instruction": f"Add {i % 7} and {i % 5}.", "output": str(i % 7 + i % 5)} for i in range(16)]
    (tmp_path / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = make_finetunejob(
        "from-hub", model={"uri": f"hf://{REPO}", "revision": "v1", "template": "qwen"},
        datasets=[{"uri": "file://sums.jsonl", "format": "alpaca"}], lora={"rank": 4, "target": ["all"]},
        training={"maxSteps": 1, "perDeviceBatchSize": 2, "cutoffLen": 32, "gradientCheckpointing": False},
        output={"uri": "file://out/"})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}

    done = subprocess.run([sys.executable, "-m", "kubetune.cli.main", "run", str(path), "--work-dir",
                           str(tmp_path / "work"), "--no-progress"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=900)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [output] = (tmp_path / "out").glob("from-hub-*")
    manifest = read_manifest(output)
    assert (manifest.base_model.uri, manifest.base_model.revision) == (f"hf://{REPO}", "v1")

