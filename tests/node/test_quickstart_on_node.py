"""The product's promise on a real node: `kubectl apply` a FineTuneJob -> pods train -> an export Job merges ->
an in-cluster OpenAI endpoint answers an application pod, plus the faults a cluster brings.

Nothing is played by the test: the Kubeflow training-operator creates the PyTorchJob's pods, kube-scheduler places
them, the kubelet runs the locally built images, the operator runs as its Deployment from manifests/.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Callable, Iterator

import pytest

from kubetune.artifacts import check_artifact
from kubetune.train.callbacks import read_trainer_log
from tests.node.conftest import API_KEY_SECRET
from tests.support import nodeflow as flow
from tests.support.node import OPERATOR_NAMESPACE, Node, operator_ready

pytestmark = [pytest.mark.node, pytest.mark.slow]

# Optimizer steps: enough for the held-out answers to move and for training to outlast the runtime's 10 s between
# progress reports (so `kubectl get -w` shows a part-way row), few enough for two CPU cores.
STEPS = 40
SAVE_STEPS = 10
LOGGING_STEPS = 2
BATCH = 16
SMALL = {"requests": {"cpu": "100m", "memory": "512Mi"}}  # two ranks and two endpoints fit one small node


def finetunejob(namespace: str, name: str, launcher: str, steps: int = STEPS) -> dict:
    return flow.quickstart(
        "finetunejob.yaml",
        metadata={"name": name, "namespace": namespace},
        spec={"launcher": launcher,
              "resources": {"nodes": 2, **SMALL},
              "training": {"maxSteps": steps, "saveSteps": SAVE_STEPS, "loggingSteps": LOGGING_STEPS,
                           "perDeviceBatchSize": BATCH},
              "lora": {"rank": 8, "alpha": 16}},
    )


@contextlib.contextmanager
def watching(node: Node, namespace: str) -> Iterator[list[str]]:
    """`kubectl get finetunejobs -w` as a person would run it: every row it prints while the block runs."""
    out = node.layout.state / f"watch-{namespace}.txt"
    with out.open("w") as sink:
        proc = subprocess.Popen([node.kubectl_path, "get", "finetunejobs", "-n", namespace, "-w"], stdout=sink,
                                stderr=subprocess.STDOUT, env=node.env())
    rows: list[str] = []
    try:
        yield rows
    finally:
        proc.terminate()
        proc.wait(30)
        rows.extend(out.read_text().splitlines())


def wait_status(node: Node, namespace: str, name: str, until: Callable[[dict], bool], timeout_s: float) -> None:
    flow.wait_for(lambda: until(flow.status_of(node, "finetunejobs", name, namespace)), timeout_s,
                  f"FineTuneJob {name} status", interval_s=0.5)


def intermediate_rows(rows: list[str]) -> list[tuple[int, float]]:
    """(percent, loss) of Running rows part-way with a loss: NAME STAGE METHOD MODEL PHASE % LOSS [SCORE] AGE."""
    seen = []
    for row in rows:
        cols = row.split()
        if len(cols) >= 8 and cols[4] == "Running" and re.fullmatch(r"\d+", cols[5]) and 0 < int(cols[5]) < 100:
            try:
                seen.append((int(cols[5]), float(cols[6])))
            except ValueError:
                continue
    return seen


def resume_point(node: Node, ns: str) -> tuple[int, str]:
    """Delete the worker pod mid-run; returns (the step reached then, the deleted pod's uid)."""
    status = flow.status_of(node, "finetunejobs", "qs", ns)
    assert status.get("phase") == "Running", f"finished before the fault could be injected: {status}"
    workers = flow.items(node, "pods", ns, "training.kubeflow.org/replica-type=worker")
    assert [p["metadata"]["name"] for p in workers] == ["qs-worker-0"]
    node.kubectl("delete", "pod", "qs-worker-0", "-n", ns, "--grace-period=1", "--wait=false")
    return status["progress"]["step"], workers[0]["metadata"]["uid"]


def logged_steps(output) -> list[int]:
    return [int(r["step"]) for r in read_trainer_log(output) if "loss" in r]


def test_pytorchjob_trains_resumes_exports_and_serves_in_cluster(node: Node, node_namespace: str):
    ns = node_namespace
    pvc_root = flow.volumes(node, ns)
    heldout = flow.prepare_quickstart(pvc_root, train_size=STEPS * BATCH * 2, heldout_size=8)
    with watching(node, ns) as rows:
        node.apply(finetunejob(ns, "qs", "pytorchjob"))
        # Once a checkpoint exists and training has gone past it, delete a worker pod.
        checkpoints = lambda: list((pvc_root / "models" / "quickstart").glob(f"qs-*/checkpoint-{SAVE_STEPS}"))  # noqa: E731
        wait_status(node, ns, "qs", lambda s: (((s.get("progress") or {}).get("step") or 0) > SAVE_STEPS + 2
                    and bool(checkpoints())) or s.get("phase") in ("Succeeded", "Failed"), timeout_s=900)
        killed_at, deleted_uid = resume_point(node, ns)
        wait_status(node, ns, "qs", lambda s: s.get("phase") in ("Succeeded", "Failed"), timeout_s=900)
    done = flow.wait_phase(node, "finetunejobs", "qs", ns, "Succeeded", timeout_s=30)
    seen = intermediate_rows(rows)
    assert seen, f"`kubectl get finetunejobs -w` never showed a running job with progress and loss: {rows}"

    # The PyTorchJob replaced the deleted pod; the ranks resumed from the last checkpoint: every logged step
    # exactly once, none lost and none repeated.
    new_worker = flow.get(node, "pod", "qs-worker-0", ns)
    assert new_worker and new_worker["metadata"]["uid"] != deleted_uid
    output = flow.output_dir(node, ns, done["output"]["uri"])
    assert logged_steps(output) == list(range(LOGGING_STEPS, STEPS + 1, LOGGING_STEPS)), killed_at
    assert done["progress"]["step"] == STEPS
    master_log = node.kubectl("logs", "-n", ns, "qs-master-0", check=False).stdout
    resumed = re.findall(r"checkpoint-(\d+)", master_log)
    assert resumed and SAVE_STEPS <= int(resumed[-1]) <= killed_at, master_log[-2000:]
    check_artifact(output, expect_type="lora-adapter", verify_files=True)

    # Export: its pod is killed while it runs; the Job retries and the merge completes.
    node.apply(flow.quickstart("modelexport.yaml", metadata={"name": "qs-merged", "namespace": ns},
                               spec={"source": {"fineTuneJobRef": {"name": "qs"}}}))
    owned = "kubetune.io/modelexport=qs-merged"
    running = flow.wait_for(lambda: [p for p in flow.items(node, "pods", ns, owned) if any(
        "running" in (c.get("state") or {}) for c in (p.get("status") or {}).get("containerStatuses") or [])],
        300, "export container running")
    node.kubectl("delete", "pod", running[0]["metadata"]["name"], "-n", ns, "--grace-period=0", "--force")
    export = flow.wait_phase(node, "modelexports", "qs-merged", ns, "Succeeded", timeout_s=600)
    jobs = flow.items(node, "jobs", ns, owned)
    assert len(jobs) == 1 and jobs[0]["status"].get("succeeded") == 1, jobs
    pods = [p["metadata"]["name"] for p in flow.items(node, "pods", ns, owned)]
    assert running[0]["metadata"]["name"] not in pods and len(pods) == 1, pods  # the Job made a second pod
    merged = flow.output_dir(node, ns, export["output"]["uri"])
    check_artifact(merged, expect_type="full-model", verify_files=True)

    # Serve the merged model and, for comparison, the untrained base; an application pod asks both.
    auth = {"apiKeySecretRef": {"name": API_KEY_SECRET[0], "key": API_KEY_SECRET[1]}}
    node.apply(flow.quickstart("inferenceservice.yaml", metadata={"name": "qs", "namespace": ns},
                               spec={"model": {"modelExportRef": {"name": "qs-merged"}}, "auth": auth,
                                     "resources": SMALL}))
    untrained = flow.quickstart("inferenceservice.yaml", metadata={"name": "untrained", "namespace": ns},
                                spec={"servedModelName": "untrained", "auth": auth, "resources": SMALL})
    untrained["spec"]["model"] = {"uri": "pvc://models/quickstart-base"}
    node.apply(untrained)
    for name in ("qs", "untrained"):
        flow.wait_phase(node, "inferenceservices", name, ns, "Ready", timeout_s=600)
    endpoints = {"quickstart": f"http://qs.{ns}.svc.cluster.local:8000/v1",
                 "untrained": f"http://untrained.{ns}.svc.cluster.local:8000/v1"}
    assert flow.status_of(node, "inferenceservices", "qs", ns).get("url", "").startswith(f"http://qs.{ns}.svc")
    result = flow.run_client_pod(node, ns, node.images["CLIENT_IMAGE"], endpoints, heldout, API_KEY_SECRET)
    assert result["quickstart"]["models"] == ["quickstart"] and result["untrained"]["models"] == ["untrained"]
    score = {m: sum(flow.word_f1(r, row["output"]) for r, row in zip(result[m]["replies"], heldout, strict=True))
             / len(heldout) for m in result}
    assert score["quickstart"] > score["untrained"], (score, result)


def test_job_launcher_survives_operator_restart_without_duplicates(node: Node, node_namespace: str):
    ns = node_namespace
    pvc_root = flow.volumes(node, ns)
    flow.prepare_quickstart(pvc_root, train_size=STEPS * BATCH * 2, heldout_size=4)
    with watching(node, ns) as rows:
        node.apply(finetunejob(ns, "qs-job", "job"))
        # Once the operator has created the children, delete its pod; the Deployment brings a new one.
        flow.wait_for(lambda: flow.get(node, "job", "qs-job", ns), 120, "Job qs-job created")
        before = operator_ready(node)
        assert len(before) == 1, before
        node.kubectl("delete", "pod", "-n", OPERATOR_NAMESPACE, before[0], "--wait=false")
        flow.wait_for(lambda: [p for p in operator_ready(node) if p not in before], 300, "a new operator pod Ready")
        wait_status(node, ns, "qs-job", lambda s: s.get("phase") in ("Succeeded", "Failed"), timeout_s=900)
    flow.wait_phase(node, "finetunejobs", "qs-job", ns, "Succeeded", timeout_s=30)
    assert intermediate_rows(rows), f"`kubectl get finetunejobs -w` never showed progress and loss: {rows}"
    owned = "kubetune.io/finetunejob=qs-job"
    children = {kind: [o["metadata"]["name"] for o in flow.items(node, kind, ns, owned)]
                for kind in ("jobs", "configmaps", "services", "pytorchjobs")}
    assert children == {"jobs": ["qs-job"], "configmaps": ["qs-job-train-config"], "services": ["qs-job-nodes"],
                        "pytorchjobs": []}, json.dumps(children)
