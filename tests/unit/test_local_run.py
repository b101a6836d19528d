"""`kubetune run` without training: plan order, work-dir records, status transitions, reference resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubetune.api.finetunejob import FineTuneJobStatus
from kubetune.api.inferenceservice import InferenceServiceStatus
from kubetune.api.modelexport import ModelExportStatus
from kubetune.cli.main import main as kubetune_main
from kubetune.lifecycle.outputs import output_uri
from kubetune.local.context import LocalContext
from kubetune.local.listing import listing
from kubetune.local.plan import LocalObject, PlanError, load_objects, order_objects
from kubetune.local.runner import run_objects
from kubetune.local.sources import Artifact, Unresolved, resolve_reference
from kubetune.local.status import Cond, Tracker, set_condition
from kubetune.local.workdir import WorkDir
from kubetune.uris import UriResolver, absolute_uri
from tests.builders import make_finetunejob, make_inferenceservice, make_modelexport

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, *docs: dict) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def names(objects: list[LocalObject]) -> list[str]:
    return [o.ref for o in objects]


def context(tmp_path: Path, lines: list[str]) -> LocalContext:
    return LocalContext(work=WorkDir(tmp_path / "work"), pvc_root=tmp_path / "pvc", console=False, say=lines.append)


def test_objects_run_after_what_they_reference(tmp_path):
    svc = make_inferenceservice("svc", model={"uri": None, "modelExportRef": {"name": "merged"}})
    merged = make_modelexport("merged", source={"fineTuneJobRef": {"name": "sft"}})
    dpo = make_finetunejob("dpo", model={"uri": None, "fineTuneJobRef": {"name": "sft"}})
    sft = make_finetunejob("sft")
    file = write(tmp_path / "all.yaml", svc, merged, dpo, sft)
    assert names(order_objects(load_objects([file]))) == [
        "FineTuneJob/sft", "FineTuneJob/dpo", "ModelExport/merged", "InferenceService/svc"]


def test_reference_cycles_and_duplicates_are_rejected(tmp_path):
    a = make_finetunejob("a", model={"uri": None, "fineTuneJobRef": {"name": "b"}})
    b = make_finetunejob("b", model={"uri": None, "fineTuneJobRef": {"name": "a"}})
    with pytest.raises(PlanError, match=r"reference cycle: FineTuneJob/a -> FineTuneJob/b -> FineTuneJob/a"):
        order_objects(load_objects([write(tmp_path / "cycle.yaml", a, b)]))
    with pytest.raises(PlanError, match="FineTuneJob/a is defined twice"):
        order_objects(load_objects([write(tmp_path / "one.yaml", make_finetunejob("a")),
                                    write(tmp_path / "two.yaml", make_finetunejob("a"))]))


def test_invalid_files_report_like_validate(tmp_path, capsys):
    bad = make_finetunejob("bad", method="qlora")
    del bad["spec"]["quantization"]
    file = write(tmp_path / "bad.yaml", bad)
    assert kubetune_main(["run", str(file), "--work-dir", str(tmp_path / "w")]) == 2
    run_err = capsys.readouterr().err
    assert kubetune_main(["validate", str(file)]) == 1
    assert run_err == capsys.readouterr().err
    assert "quantization is required when method is qlora" in run_err and f"{file}:" in run_err


def test_runtime_configs_are_refused_with_a_pointer(tmp_path, capsys):
    flat = tmp_path / "train.yaml"
    flat.write_text(yaml.safe_dump({"model_name_or_path": "m", "stage": "sft", "dataset": "d", "output_dir": "o"}))
    assert kubetune_main(["run", str(flat), "--work-dir", str(tmp_path / "w")]) == 2
    assert "kubetune train" in capsys.readouterr().err


def test_uid_is_stable_until_the_spec_changes(tmp_path):
    work = WorkDir(tmp_path)
    file = write(tmp_path / "ftj.yaml", make_finetunejob("sft"))
    obj = load_objects([file])[0]
    record, new = work.admit(obj)
    assert new
    work.save(record)
    again, new_again = work.admit(load_objects([file])[0])
    assert (again.uid, new_again) == (record.uid, False)
    write(file, make_finetunejob("sft", training={"epochs": 1}))
    changed, new_changed = work.admit(load_objects([file])[0])
    assert new_changed and changed.uid != record.uid
    assert output_uri("pvc://m/out", obj.name, record.uid) == f"pvc://m/out/sft-{record.uid.replace('-', '')[:8]}/"


def test_tracker_prints_transitions_and_keeps_transition_times(tmp_path):
    work = WorkDir(tmp_path)
    file = write(tmp_path / "ftj.yaml", make_finetunejob("sft"))
    record, _ = work.admit(load_objects([file])[0])
    times = iter(["2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"])
    lines: list[str] = []
    tracker = Tracker(work, record, lines.append, clock=lambda: next(times))
    accepted = Cond("Accepted", True, "SpecValid", "spec is valid")
    tracker.set("Pending", "Pending", "queued", [accepted])
    tracker.set("Running", "Running", "training", [accepted, Cond("Running", True, "Running", "training")])
    tracker.set("Running", "Running", "still training", [accepted])
    assert len(lines) == 2 and "Pending -> Running" in lines[1] and "Running: training" in lines[1]
    saved = work.load(record.key)
    assert saved is not None and saved.status["message"] == "still training"
    accepted_cond = next(c for c in saved.status["conditions"] if c["type"] == "Accepted")
    assert accepted_cond["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    FineTuneJobStatus.model_validate(saved.status)


def test_set_condition_moves_the_time_only_on_a_flip():
    conds = set_condition([], Cond("Ready", False, "Deploying", "loading"), "t1", 1)
    conds = set_condition(conds, Cond("Ready", False, "NotReady", "still"), "t2", 1)
    assert conds[0]["lastTransitionTime"] == "t1"
    conds = set_condition(conds, Cond("Ready", True, "Ready", "up"), "t3", 1)
    assert (conds[0]["status"], conds[0]["lastTransitionTime"]) == ("True", "t3")


def test_references_resolve_from_records(tmp_path):
    work = WorkDir(tmp_path / "work")
    assert isinstance(resolve_reference("FineTuneJob", "sft", "default", work), Unresolved)
    file = write(tmp_path / "ftj.yaml", make_finetunejob("sft"))
    record, _ = work.admit(load_objects([file])[0])
    record.status = {"phase": "Running", "conditions": []}
    work.save(record)
    waiting = resolve_reference("FineTuneJob", "sft", "default", work)
    assert isinstance(waiting, Unresolved) and waiting.reason == "WaitingForSource" and not waiting.final
    record.status = {"phase": "Succeeded", "conditions": [{"type": "Succeeded", "status": "True"}],
                     "output": {"uri": "pvc://models/sft-1/", "artifactType": "lora-adapter",
                                "baseModel": {"uri": "file://base"}}}
    work.save(record)
    found = resolve_reference("FineTuneJob", "sft", "default", work)
    assert isinstance(found, Artifact) and found.artifact_type == "lora-adapter"
    # the recorded base model resolves where the producer's file is, not where the consumer's is
    consumer = UriResolver(pvc_root=tmp_path / "pvc", base_dir=tmp_path / "elsewhere")
    assert found.base_model_path(consumer) == str((tmp_path / "base").resolve())
    record.status["conditions"] = [{"type": "Failed", "status": "True"}]
    work.save(record)
    failed = resolve_reference("FineTuneJob", "sft", "default", work)
    assert isinstance(failed, Unresolved) and failed.reason == "SourceFailed" and failed.final


def test_absolute_uri_keeps_volumes_and_anchors_local_paths(tmp_path):
    resolver = UriResolver(pvc_root=tmp_path / "pvc", base_dir=tmp_path)
    assert absolute_uri("pvc://models/x/", resolver) == "pvc://models/x/"
    assert absolute_uri("file://out/run/", resolver) == f"file://{tmp_path.resolve()}/out/run/"


def test_consumers_of_a_missing_source_fail_and_independent_objects_report(tmp_path):
    lines: list[str] = []
    ctx = context(tmp_path, lines)
    merged = make_modelexport("merged", source={"fineTuneJobRef": {"name": "nowhere"}})
    svc = make_inferenceservice("svc", model={"uri": None, "modelExportRef": {"name": "merged"}})
    objects = load_objects([write(tmp_path / "chain.yaml", merged, svc)])
    assert run_objects(objects, ctx) == 1
    export = ctx.work.load(("default", "ModelExport", "merged"))
    service = ctx.work.load(("default", "InferenceService", "svc"))
    assert export is not None and service is not None
    assert (export.phase, export.status["reason"]) == ("Failed", "SourceNotFound")
    assert "add its file to the command" in export.status["message"]
    assert (service.phase, service.status["reason"]) == ("Failed", "SourceFailed")
    ModelExportStatus.model_validate(export.status)
    InferenceServiceStatus.model_validate(service.status)
    assert any("WaitingForSource" in line for line in lines)  # the service waited while the export was queued
    table = listing(ctx.work.records())
    assert "merged" in table and "SourceNotFound" in table


def test_one_inferenceservice_per_run(tmp_path):
    objects = load_objects([write(tmp_path / "two.yaml", make_inferenceservice("a"), make_inferenceservice("b"))])
    with pytest.raises(PlanError, match="one InferenceService per"):
        run_objects(objects, context(tmp_path, []))


def test_quickstart_files_plan_in_order():
    files = sorted((ROOT / "examples" / "quickstart").glob("*.yaml"))
    assert names(order_objects(load_objects(files))) == [
        "FineTuneJob/quickstart-sft", "ModelExport/quickstart-merged", "InferenceService/quickstart"]
