"""`kubetune run` trains a FineTuneJob with the real runtime: Ctrl-C suspends it, the same command resumes it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubetune.artifacts import check_artifact
from kubetune.train.callbacks import read_trainer_log
from tests.builders import make_finetunejob

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
# Enough steps after the first checkpoint that Ctrl-C lands mid-run even when a loaded machine delays the poll
# (a padding-free step of this model takes a few milliseconds: 600 steps could end before the signal arrived).
STEPS, SAVE_EVERY = 3000, 5


class Run:
    """``kubetune run`` in a subprocess whose output goes to a file, so that nothing it prints can fill a pipe
    and stall it while the test waits for a checkpoint."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "kubetune.cli.main", "run", *args, "--no-progress"],
                                         stdout=out, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the run to end (the limit only bounds a hung run); its exit code and everything it printed."""
        return self.proc.wait(timeout=timeout), self.output()


def kubetune_run(log: Path, *args: str) -> Run:
    return Run(log, *args)


def record(work: Path, name: str) -> dict:
    return json.loads((work / "objects" / "default" / "FineTuneJob" / f"{name}.json").read_text())


@pytest.fixture
def job_file(tmp_path, tiny_llama) -> Path:
    """A FineTuneJob reading a pvc:// model and a dataset path relative to its own file."""
    pvc_model = tmp_path / "pvc" / "models" / "base"
    pvc_model.parent.mkdir(parents=True)
    shutil.copytree(tiny_llama, pvc_model)  # a symlink out of the claim would be refused, as in a pod
    rows = [{"instruction": f"Add {i % 7} and {i % 5}.", "output": str(i % 7 + i % 5)} for i in range(64)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = make_finetunejob(
        "sums", model={"uri": "pvc://models/base", "template": "qwen"},
        datasets=[{"uri": "file://data/sums.jsonl", "format": "alpaca"}],
        lora={"rank": 4, "target": ["all"]},
        training={"maxSteps": STEPS, "learningRate": 5.0e-3, "perDeviceBatchSize": 4, "gradientAccumulationSteps": 1,
                  "cutoffLen": 48, "saveSteps": SAVE_EVERY, "saveTotalLimit": 2, "loggingSteps": 5,
                  "gradientCheckpointing": False},
        output={"uri": "pvc://models/out/"},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def wait_for_checkpoint(run: Run, work: Path, pvc: Path, timeout: float = 900) -> Path:
    """The first complete checkpoint of the job's output directory (named after the uid in its record)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.proc.poll() is None, run.output()[-3000:]
        try:
            uid = record(work, "sums")["metadata"]["uid"]
        except (OSError, ValueError, KeyError):
            uid = None
        found = sorted((pvc / "models" / "out").glob(f"sums-{uid[:8]}/checkpoint-*/kubetune-checkpoint.json")) \
            if uid else []
        if found:
            return found[0].parent
        time.sleep(0.05)
    raise AssertionError("no checkpoint reached")


def test_ctrl_c_suspends_and_the_same_command_resumes(job_file, tmp_path):
    work, pvc = tmp_path / "work", tmp_path / "pvc"
    args = (str(job_file), "--work-dir", str(work), "--pvc-root", str(pvc))
    first = kubetune_run(tmp_path / "first.log", *args)
    wait_for_checkpoint(first, work, pvc)
    first.proc.send_signal(signal.SIGINT)
    code, out = first.finish(timeout=600)
    assert code == 130, out[-3000:]
    status = record(work, "sums")["status"]
    assert (status["phase"], status["reason"]) == ("Suspended", "Suspended"), out[-3000:]
    assert "run again to resume from pvc://models/out/sums-" in status["message"]
    assert "Running -> Suspended" in out and "run the same command again" in out

    second = kubetune_run(tmp_path / "second.log", *args)
    code2, out2 = second.finish(timeout=1200)
    assert code2 == 0, out2[-4000:]
    assert "resuming from checkpoint-" in out2 and "Running -> Succeeded" in out2
    meta, status = record(work, "sums")["metadata"], record(work, "sums")["status"]
    assert status["phase"] == "Succeeded" and status["restarts"] == 1
    assert {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}["Suspended"] == ("False", "Resumed")
    assert status["progress"]["step"] == STEPS
    output_dir = pvc / "models" / "out" / f"sums-{meta['uid'][:8]}"
    assert status["output"]["uri"] == f"pvc://models/out/sums-{meta['uid'][:8]}/"
    manifest = check_artifact(output_dir, expect_type="lora-adapter", verify_files=True)
    assert manifest.created_by.uid == meta["uid"] and manifest.base_model.uri == "pvc://models/base"
    steps = [r["step"] for r in read_trainer_log(output_dir) if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # one run's log, no repeated steps after resuming

    third = kubetune_run(tmp_path / "third.log", *args)
    code3, out3 = third.finish(timeout=600)
    assert code3 == 0 and "unchanged since it ran" in out3
