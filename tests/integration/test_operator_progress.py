"""Training progress reaches FineTuneJob status through the runtime's own identity (the kubetune-runtime Role):
the pod's environment as the operator rendered it, a real ServiceAccount token, plain HTTPS from the runtime."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.status_reporter import from_env
from tests.builders import make_finetunejob
from tests.support.operator import get_json, install_runtime_identity, wait_for

pytestmark = pytest.mark.cluster

FTJ, PTJ = "finetunejobs.kubetune.io", "pytorchjobs.kubeflow.org"


def pod_env(cluster, namespace: str, name: str) -> dict[str, str]:
    """The literal env of the training container, as the operator rendered it (Secrets refs left out)."""
    ptj = wait_for(lambda: get_json(cluster, PTJ, name, namespace), what="PyTorchJob")
    container = ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def runtime_kubeconfig(cluster, namespace: str) -> Path:
    install_runtime_identity(cluster, namespace)
    return cluster.serviceaccount_kubeconfig(namespace, "kubetune-runtime")


def progress_of(cluster, namespace: str, name: str) -> dict[str, Any] | None:
    return ((get_json(cluster, FTJ, name, namespace) or {}).get("status") or {}).get("progress")


def test_status_sink_reports_as_the_runtime_serviceaccount(cluster, operator, namespace, tmp_path):
    from kubetune.train.progress import snapshot

    out = tmp_path / "out"
    cluster.apply({**make_finetunejob("live", output={"uri": f"file://{out}/"}),
                   "metadata": {"name": "live", "namespace": namespace}})
    env = pod_env(cluster, namespace, "live")
    sink = from_env({**env, "KUBETUNE_KUBECONFIG": str(runtime_kubeconfig(cluster, namespace))})
    assert sink is not None

    latencies = []
    for step, loss in ((10, 1.25), (20, 0.875)):
        if step == 20:  # a complete checkpoint shows up as latestCheckpoint
            ckpt = Path(env["KUBETUNE_OUTPUT_DIR"]) / "checkpoint-20"
            ckpt.mkdir(parents=True)
            (ckpt / "kubetune-checkpoint.json").write_text("{}")
        began = time.monotonic()
        sink.update(snapshot(step, 40, loss, step / 40, 90, datetime.now(UTC)))
        wait_for(lambda step=step: (progress_of(cluster, namespace, "live") or {}).get("step") == step,
                 interval_s=0.05, what=f"progress step {step}")
        latencies.append(time.monotonic() - began)

    status = get_json(cluster, FTJ, "live", namespace)["status"]
    assert status["progress"]["totalSteps"] == 40 and status["progress"]["percent"] == 50
    assert status["progress"]["loss"] == "0.875" and status["progress"]["etaSeconds"] == 90
    assert status["latestCheckpoint"] == f"{env['KUBETUNE_OUTPUT_URI'].rstrip('/')}/checkpoint-20"
    row = cluster.kubectl("get", "finetunejobs", "live", "-n", namespace, "--no-headers").stdout.split()
    assert row[5:7] == ["50", "0.875"]  # PROGRESS and LOSS columns
    # The operator's own status writes leave the runtime's fields alone.
    assert status["phase"] == "Pending" and status["observedGeneration"] == 1
    print(f"\nprogress write -> visible in status: {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")


def test_runtime_process_trains_and_reports_progress(cluster, operator, namespace, tmp_path, request):
    """`kubetune train /etc/kubetune/config.yaml` as the pod runs it: the ConfigMap's file, the pod's env."""
    pytest.importorskip("kubetune.data", reason="the training data pipeline (kubetune.data) is not in this build")
    tiny_llama = request.getfixturevalue("tiny_llama")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say {w}.", "input": "", "output": f"{w} {w}."}) + "\n"
                            for w in ("red", "green", "blue", "cyan", "pink", "gold", "gray", "teal")))
    cluster.apply({**make_finetunejob(
        "tiny", model={"uri": f"file://{tiny_llama}", "template": "llama3"},
        datasets=[{"uri": f"file://{data}", "format": "alpaca"}], output={"uri": f"file://{tmp_path}/out/"},
        training={"maxSteps": 4, "perDeviceBatchSize": 2, "gradientAccumulationSteps": 1, "cutoffLen": 64,
                  "loggingSteps": 1, "saveSteps": 2, "gradientCheckpointing": False, "learningRate": 1e-3},
        extraArgs={"progress_interval_s": 0.5}), "metadata": {"name": "tiny", "namespace": namespace}})
    env = pod_env(cluster, namespace, "tiny")
    config = tmp_path / "config.yaml"  # stands in for the ConfigMap mounted at /etc/kubetune/config.yaml
    config.write_text(get_json(cluster, "configmap", "tiny-train-config", namespace)["data"]["config.yaml"])
    assert yaml.safe_load(config.read_text())["output_dir"] == env["KUBETUNE_OUTPUT_DIR"]
    kubetune = shutil.which("kubetune", path=str(Path(sys.executable).parent)) or "kubetune"
    process = subprocess.Popen(
        [kubetune, "train", str(config), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, **env, "OMP_NUM_THREADS": "2",
                        "KUBETUNE_KUBECONFIG": str(runtime_kubeconfig(cluster, namespace))})
    seen_while_running = None
    written: dict[int, float] = {}  # step -> when progress.json first showed it
    shown: dict[int, float] = {}  # step -> when status.progress first showed it
    progress_file = Path(env["KUBETUNE_OUTPUT_DIR"]) / "progress.json"
    began = time.monotonic()
    deadline = began + 600
    while process.poll() is None and time.monotonic() < deadline:
        if progress_file.is_file():
            with contextlib.suppress(ValueError):
                written.setdefault(json.loads(progress_file.read_text())["step"], time.monotonic())
        current = progress_of(cluster, namespace, "tiny")
        if current:
            seen_while_running = seen_while_running or current
            shown.setdefault(current["step"], time.monotonic())
        time.sleep(0.05)
    output = process.communicate(timeout=60)[0]
    lags = [f"step {step}: {(shown[step] - written[step]) * 1000:.0f} ms" for step in sorted(written) if step in shown]
    print(f"\ntraining process ran {time.monotonic() - began:.1f}s; progress.json -> status.progress: "
          f"{', '.join(lags)}")
    assert process.returncode == 0, output[-4000:]
    assert seen_while_running is not None, "no progress in status while the runtime trained"
    final = wait_for(lambda: (p := progress_of(cluster, namespace, "tiny")) and p.get("step") == 4 and p,
                     what="final progress")
    assert final["totalSteps"] == 4 and final["percent"] == 100 and float(final["loss"]) > 0
    status = get_json(cluster, FTJ, "tiny", namespace)["status"]
    assert status["latestCheckpoint"].startswith(env["KUBETUNE_OUTPUT_URI"].rstrip("/") + "/checkpoint-")
