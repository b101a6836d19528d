"""The operator and `kubetune run` are two executors of one lifecycle: given the same observations they must
reach the same status. Each case feeds both executors the same upstream status and compares what they derive."""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.lifecycle import runs
from kubetune.lifecycle.conditions import Cond, Verdict, apply_conditions
from kubetune.lifecycle.health import with_health
from kubetune.lifecycle.inferenceservice import ServingObservation, derive_inferenceservice_status
from kubetune.lifecycle.modelexport import ExportObservation, derive_modelexport_status
from kubetune.lifecycle.runs import RunState
from kubetune.local.context import LocalContext
from kubetune.local.plan import load_objects
from kubetune.local.runner import admit
from kubetune.local.sources import resolve_reference
from kubetune.local.status import Tracker
from kubetune.local.workdir import WorkDir
from kubetune_operator.resolve import resolve_ref
from tests.builders import make_finetunejob, make_inferenceservice, make_modelexport

FAILED = {"phase": "Failed", "reason": "BackoffLimitExceeded", "message": "PyTorchJob sft failed",
          "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                          "message": "pod sft-master-0 ran out of memory"}]}
OUTPUT = {"uri": "pvc://models/sft-1a2b3c4d/", "artifactType": "lora-adapter",
          "baseModel": {"uri": "hf://org/base", "revision": "main"}}

UPSTREAMS: dict[str, dict[str, Any]] = {
    "created": {},
    "running": {"phase": "Running", "conditions": [{"type": "Running", "status": "True"}]},
    "succeeded-without-output": {"phase": "Succeeded", "conditions": [{"type": "Succeeded", "status": "True"}]},
    "failed": FAILED,
    "failed-without-message": {"phase": "Failed", "conditions": [{"type": "Failed", "status": "True"}]},
    "succeeded": {"phase": "Succeeded", "conditions": [{"type": "Succeeded", "status": "True"}], "output": OUTPUT},
}


def admitted(work: WorkDir, tmp_path: Path):  # type: ignore[no-untyped-def]
    file = tmp_path / "ftj.yaml"
    file.write_text(yaml.safe_dump(make_finetunejob("sft")))
    record, _ = work.admit(load_objects([file])[0])
    return record


def local_verdict(tmp_path: Path, status: dict[str, Any]) -> dict[str, Any]:
    work = WorkDir(tmp_path / "work")
    record = admitted(work, tmp_path)
    record.status = status
    work.save(record)
    found = asdict(resolve_reference("FineTuneJob", "sft", "default", work))
    found.pop("base_dir", None)  # where a local producer's relative URIs are anchored: local only
    return found


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_operator_and_local_run_reach_the_same_source_verdict(tmp_path, upstream):
    status = UPSTREAMS[upstream]
    in_cluster = asdict(resolve_ref(("FineTuneJob", "sft"), {"status": status}))
    in_cluster.pop("base_dir", None)
    local = local_verdict(tmp_path, status)
    local.pop("absent_is_final", None)
    in_cluster.pop("absent_is_final", None)
    assert local == in_cluster


def test_the_failed_upstream_is_named_with_its_failure():
    found = resolve_ref(("FineTuneJob", "sft"), {"status": FAILED})
    assert found.message == "FineTuneJob 'sft' failed: pod sft-master-0 ran out of memory" and found.final


def test_a_missing_source_waits_in_the_cluster_and_stops_a_local_run(tmp_path):
    """The one difference the executors state: a local run knows every object it will run."""
    in_cluster = resolve_ref(("FineTuneJob", "sft"), None)
    local = resolve_reference("FineTuneJob", "sft", "default", WorkDir(tmp_path / "work"))
    assert in_cluster.reason == local.reason == "SourceNotFound"
    assert not in_cluster.final and local.final


def test_operator_and_local_run_keep_the_same_conditions_through_a_run(tmp_path):
    """Pending -> Running -> Succeeded as both executors record it: same transition times, and a condition keeps
    its place when it changes (as metav1's SetStatusCondition does), whatever order a step lists them in."""
    accepted = Cond("Accepted", True, "SpecValid", "spec is valid")
    steps = [
        ("t0", [accepted, Cond("Running", False, "Pending", "queued")]),
        ("t1", [accepted, Cond("Running", True, "Running", "training")]),
        ("t2", [Cond("Succeeded", True, "Succeeded", "done"), Cond("Running", False, "Succeeded", "done")]),
    ]
    work = WorkDir(tmp_path / "work")
    record = admitted(work, tmp_path)
    clock = iter(now for now, _ in steps)
    tracker = Tracker(work, record, say=lambda _: None, clock=lambda: next(clock))
    in_cluster: list[dict[str, Any]] = []
    for now, conds in steps:
        tracker.set("Running", "Running", "m", conds)
        in_cluster = apply_conditions(in_cluster, with_health("FineTuneJob", Verdict("Running", "Running", "m", conds)),
                                      now, record.generation)
    assert tracker.status["conditions"] == in_cluster
    assert [c["type"] for c in in_cluster] == ["Accepted", "Running", "Ready", "Reconciling", "Stalled", "Succeeded"]
    assert in_cluster[0]["lastTransitionTime"] == "t0"


def _without_times(status: dict[str, Any]) -> dict[str, Any]:
    return {"phase": status["phase"], "reason": status["reason"], "message": status["message"],
            "conditions": [{k: v for k, v in c.items() if k not in ("lastTransitionTime", "observedGeneration")}
                           for c in status["conditions"]]}


def _operator_waiting(kind: str, status: dict[str, Any]) -> dict[str, Any]:
    waiting = resolve_ref(("FineTuneJob", "sft"), {"status": status})
    if kind == "ModelExport":
        return derive_modelexport_status(None, ExportObservation(1, "t0", "consumer-export", unresolved=waiting))
    return derive_inferenceservice_status(None, ServingObservation(1, "t0", "app=consumer", unresolved=waiting))


@pytest.mark.parametrize("kind", ["ModelExport", "InferenceService"])
def test_a_consumer_waiting_for_its_source_has_the_same_status_in_both_executors(tmp_path, kind):
    """A consumer admitted while the FineTuneJob it reads is still running: same phase, reason and conditions."""
    work = WorkDir(tmp_path / "work")
    upstream = admitted(work, tmp_path)
    upstream.status = UPSTREAMS["running"]
    work.save(upstream)
    consumer = (make_modelexport("consumer") if kind == "ModelExport" else
                make_inferenceservice("consumer", model={"uri": None, "fineTuneJobRef": {"name": "sft"}}))
    consumer["spec"]["source" if kind == "ModelExport" else "model"] = {"fineTuneJobRef": {"name": "sft"}}
    file = tmp_path / "consumer.yaml"
    file.write_text(yaml.safe_dump(consumer))
    ctx = LocalContext(work=work, pvc_root=tmp_path / "pvc", console=False, say=lambda _: None)
    local = admit(load_objects([file])[0], ctx).status
    assert _without_times(local) == _without_times(_operator_waiting(kind, UPSTREAMS["running"]))


# ---- step by step: each status `kubetune run` records is the one the operator derives from the same observation ----

def _shape(status: dict[str, Any]) -> tuple[Any, ...]:
    """What the two executors must agree on: phase, reason and each condition's status and reason, in order."""
    return status["phase"], status["reason"], [(c["type"], c["status"], c["reason"]) for c in status["conditions"]]


class Recorder:
    """The statuses a Tracker saved, one per change, with a clock that counts."""

    def __init__(self, work: WorkDir, record: Any) -> None:
        self.steps: list[dict[str, Any]] = []
        self.ticks = iter(f"t{i}" for i in range(100))
        self.tracker = Tracker(work, record, say=lambda _: None, clock=lambda: next(self.ticks))
        saving = work.save

        def save(rec: Any) -> None:
            saving(rec)
            self.steps.append(copy.deepcopy(rec.status))

        object.__setattr__(work, "save", save)


def _ftj_upstream(work: WorkDir, tmp_path: Path, adapter_dir: Path) -> None:
    upstream = admitted(work, tmp_path)
    upstream.status = {"phase": "Succeeded", "conditions": [{"type": "Succeeded", "status": "True"}],
                       "output": {"uri": adapter_dir.as_uri() + "/", "artifactType": "lora-adapter",
                                  "baseModel": {"uri": (tmp_path / "base").as_uri()}}}
    work.save(upstream)


def test_local_modelexport_status_is_the_operators_step_by_step(tmp_path, monkeypatch):
    """kubetune run's export executor (real code path, the export itself replaced by one writing a manifest):
    source resolved -> Running -> Succeeded, each step derived as the operator derives it from its Job."""
    import kubetune.export.pipeline as pipeline
    from kubetune.artifacts import ArtifactManifest, BaseModelInfo, write_manifest
    from kubetune.local.export import run_modelexport

    def fake_export(config, created_by=None, strict_manifests=False):  # type: ignore[no-untyped-def]
        Path(config.export_dir).mkdir(parents=True)
        (Path(config.export_dir) / "model.safetensors").write_text("weights")
        return write_manifest(config.export_dir, ArtifactManifest(
            artifact_type="full-model", base_model=BaseModelInfo(uri=config.base_model_uri)))

    monkeypatch.setattr(pipeline, "run_export", fake_export)
    work = WorkDir(tmp_path / "work")
    _ftj_upstream(work, tmp_path, tmp_path / "adapter")
    file = tmp_path / "export.yaml"
    file.write_text(yaml.safe_dump(make_modelexport("merged", source={"fineTuneJobRef": {"name": "sft"}},
                                                    output={"uri": (tmp_path / "out").as_uri()})))
    obj = load_objects([file])[0]
    record, _ = work.admit(obj)
    rec = Recorder(work, record)
    ctx = LocalContext(work=work, pvc_root=tmp_path / "pvc", console=False, say=lambda _: None)
    assert run_modelexport(obj, record, rec.tracker, ctx).value == "Succeeded"
    running, done = rec.steps

    prev: dict[str, Any] = {}
    in_cluster = []
    for job in (RunState(runs.RUNNING), RunState(runs.SUCCEEDED)):
        prev = derive_modelexport_status(prev, ExportObservation(1, "t", "merged-export", job=job,
                                                                 output=done.get("output")))
        in_cluster.append(prev)
    assert [_shape(s) for s in (running, done)] == [_shape(s) for s in in_cluster]
    assert done["output"]["uri"].endswith(f"/out/merged-{record.uid.replace('-', '')[:8]}/")
    assert done["resolvedSource"]["fineTuneJob"] == "sft"


def test_local_inferenceservice_status_is_the_operators_step_by_step(tmp_path):
    """Loading -> Ready -> stopped as kubetune run records it, and Deploying -> Ready as the operator derives it
    from the Deployment: the same phases, reasons and conditions."""
    from kubetune.lifecycle import inferenceservice as S
    from kubetune.local.serve import report
    from kubetune_operator.status.deployments import observe_deployment

    work = WorkDir(tmp_path / "work")
    file = tmp_path / "isvc.yaml"
    file.write_text(yaml.safe_dump(make_inferenceservice("bot")))
    record, _ = work.admit(load_objects([file])[0])
    rec = Recorder(work, record)
    base = {"resolved_model": {"uri": "hf://org/tiny"}}
    report(rec.tracker, serving=S.ServingState(S.DEPLOYING, "loading", replicas=1), **base)
    report(rec.tracker, serving=S.ServingState(S.READY, "serving bot", replicas=1, ready=1), url="http://x/v1",
           served_models=("bot",), **base)
    report(rec.tracker, serving=S.ServingState(S.STOPPED, "stopped"), **base)
    loading, ready, stopped = rec.steps

    def deployment(ready: int, available: str) -> dict[str, Any]:
        return {"spec": {"replicas": 1}, "status": {"replicas": 1, "readyReplicas": ready,
                                                    "conditions": [{"type": "Available", "status": available}]}}

    prev: dict[str, Any] = {}
    in_cluster = []
    for dep in (deployment(0, "False"), deployment(1, "True")):
        prev = derive_inferenceservice_status(prev, ServingObservation(
            1, "t", "app=bot", url="http://bot/v1", served_models=("bot",), serving=observe_deployment(dep), **base))
        in_cluster.append(prev)
    assert [_shape(s) for s in (loading, ready)] == [_shape(s) for s in in_cluster]
    assert (ready["readyReplicas"], ready["servedModels"]) == (in_cluster[1]["readyReplicas"], ["bot"])
    assert _shape(stopped)[:2] == ("Pending", "NotReady") and "url" not in stopped
    assert stopped["resolvedModel"] == {"uri": "hf://org/tiny"}
