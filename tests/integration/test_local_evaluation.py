"""spec.evaluation through `kubetune run`: the trained model (and the base model before training) is scored on a
benchmark, the scores land in the FineTuneJob's status, the artifact manifest and ``eval/`` of the output, and a
ModelExport's minScore gate in the same run refuses or proceeds on them."""

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
from kubetune.cli.main import main
from tests.builders import make_finetunejob, make_modelexport
from tests.support.benchmarks import small_benchmark

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def record(work: Path, kind: str, name: str) -> dict:
    return json.loads((work / "objects" / "default" / kind / f"{name}.json").read_text())


def eval_score(tmp_path: Path, save: str, **model: str) -> float:
    """The score `kubetune eval` gives the same benchmark on its own (an independent load of the model)."""
    config = {**model, "template": "qwen", "task": "tiny_test", "task_dir": str(tmp_path / "bench"), "n_shot": 1,
              "batch_size": 2, "save_dir": str(tmp_path / save)}
    (tmp_path / f"{save}.yaml").write_text(yaml.safe_dump(config))
    assert main(["eval", str(tmp_path / f"{save}.yaml")]) == 0
    return json.loads((tmp_path / save / "results.json").read_text())["score"]


@pytest.fixture(scope="module")
def local_run(tiny_llama, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One `kubetune run` of a scored FineTuneJob and two gated ModelExports (minScore 0 and 100)."""
    tmp = tmp_path_factory.mktemp("local-eval")
    shutil.copytree(tiny_llama, tmp / "pvc" / "models" / "base")
    small_benchmark(tmp / "bench")
    rows = [{"instruction": f"Add {i % 7} and {i % 5}.", "output": str(i % 7 + i % 5)} for i in range(16)]
    (tmp / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    docs = [
        make_finetunejob("scored", model={"uri": "pvc://models/base", "template": "qwen"},
                         datasets=[{"uri": "file://sums.jsonl", "format": "alpaca"}],
                         lora={"rank": 4, "target": ["all"]},
                         training={"maxSteps": 4, "learningRate": 5.0e-2, "perDeviceBatchSize": 4, "cutoffLen": 32,
                                   "gradientCheckpointing": False, "saveSteps": 100},
                         evaluation={"benchmarks": [{"task": "tiny_test", "taskDir": "file://bench", "nShot": 1,
                                                     "batchSize": 2}], "baseline": True},
                         output={"uri": "pvc://models/out/"}),
        make_modelexport("promoted", source={"fineTuneJobRef": {"name": "scored"}, "minScore": 0},
                         output={"uri": "pvc://models/exports/"}),
        make_modelexport("refused", source={"fineTuneJobRef": {"name": "scored"}, "minScore": 100},
                         output={"uri": "pvc://models/exports/"}),
    ]
    (tmp / "run.yaml").write_text(yaml.safe_dump_all(docs))
    proc = subprocess.run([sys.executable, "-m", "kubetune.cli.main", "run", str(tmp / "run.yaml"), "--no-progress",
                           "--work-dir", str(tmp / "work"), "--pvc-root", str(tmp / "pvc")],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=900)
    return tmp, proc


def test_scores_land_in_status_manifest_and_eval_files(local_run):
    tmp, proc = local_run
    status = record(tmp / "work", "FineTuneJob", "scored")["status"]
    assert status["phase"] == "Succeeded", proc.stdout + proc.stderr
    out_dir = tmp / "pvc" / status["output"]["uri"].removeprefix("pvc://").rstrip("/")
    adapter_score = eval_score(tmp, "trained", model_name_or_path=str(tmp / "pvc" / "models" / "base"),
                               adapter_name_or_path=str(out_dir))
    base_score = eval_score(tmp, "base", model_name_or_path=str(tmp / "pvc" / "models" / "base"))
    assert status["evaluation"] == {"task": "tiny_test", "score": adapter_score, "scores": {"tiny_test": adapter_score},
                                    "baseline": {"tiny_test": base_score}}
    metrics = read_manifest(out_dir).metrics
    assert metrics["accuracy/tiny_test"] == adapter_score and metrics["baseline_accuracy/tiny_test"] == base_score
    assert json.loads((out_dir / "eval" / "results.json").read_text()) == status["evaluation"]
    per_task = json.loads((out_dir / "eval" / "tiny_test" / "results.json").read_text())
    assert per_task["score"] == adapter_score and set(per_task["subjects"]) == {"astronomy", "world_history"}
    assert f"evaluation: tiny_test {adapter_score:.2f}  (baseline tiny_test {base_score:.2f})" in proc.stdout


def test_min_score_gates_the_exports_of_the_same_run(local_run):
    tmp, proc = local_run
    score = record(tmp / "work", "FineTuneJob", "scored")["status"]["evaluation"]["score"]
    assert score < 100, "the refusal below needs an imperfect score"
    promoted = record(tmp / "work", "ModelExport", "promoted")["status"]
    assert promoted["phase"] == "Succeeded", proc.stdout + proc.stderr
    refused = record(tmp / "work", "ModelExport", "refused")["status"]
    assert refused["phase"] == "Failed" and refused["reason"] == "ScoreBelowMinimum"
    assert refused["message"] == (f"FineTuneJob 'scored' scored {score:g} on tiny_test, below spec.source.minScore "
                                  "100: the run regressed and is not exported")
    assert proc.returncode != 0  # a refused export fails the command, as a failed object does
