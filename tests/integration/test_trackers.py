"""report_to mlflow against a real MLflow tracking server: the run's parameters and per-step loss land there.

The FineTuneJob names the server in ``spec.env`` (as a cluster user would); ``kubetune run`` sets the literal
values for the run, as the pod would get them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.builders import make_finetunejob

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS = 3


def test_mlflow_gets_the_parameters_and_loss_of_each_step(tracking_server, tiny_llama, tmp_path):
    from mlflow.tracking import MlflowClient

    rows = [{"instruction": f"Add {i % 7} and {i % 5}.", "output": str(i % 7 + i % 5)} for i in range(16)]
    (tmp_path / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = make_finetunejob(
        "tracked", model={"uri": f"file://{tiny_llama}", "template": "qwen"},
        datasets=[{"uri": "file://sums.jsonl", "format": "alpaca"}], lora={"rank": 4, "target": ["all"]},
        training={"maxSteps": STEPS, "learningRate": 3.0e-3, "perDeviceBatchSize": 2, "cutoffLen": 32,
                  "loggingSteps": 1, "gradientCheckpointing": False},
        extraArgs={"report_to": "mlflow"},
        env=[{"name": "MLFLOW_TRACKING_URI", "value": tracking_server.url},
             {"name": "MLFLOW_EXPERIMENT_NAME", "value": "kubetune-trackers"}],
        output={"uri": "file://out/"})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")

    done = subprocess.run([sys.executable, "-m", "kubetune.cli.main", "run", str(path), "--work-dir",
                           str(tmp_path / "work"), "--no-progress"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=900)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = MlflowClient(tracking_uri=tracking_server.url)
    experiment = client.get_experiment_by_name("kubetune-trackers")
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert float(run.data.params["learning_rate"]) == pytest.approx(3.0e-3)
    assert run.data.params["max_steps"] == str(STEPS)
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in losses) == list(range(1, STEPS + 1))
    assert all(m.value > 0 for m in losses)
