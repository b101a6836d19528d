"""Checkpoint completeness and rotation, progress throttling and sinks, the trainer log and the loss curve."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from kubetune.train.callbacks import TrainerLogCallback, log_record, read_trainer_log, truncate_trainer_log
from kubetune.train.checkpoints import (
    COMPLETE_MARKER,
    discard_incomplete,
    is_complete,
    last_complete_checkpoint,
    mark_complete,
    rotate,
)
from kubetune.train.plot import plot_loss, smooth
from kubetune.train.progress import PROGRESS_NAME, JsonFileSink, ProgressReporter, eta_seconds, snapshot


def make_checkpoint(root: Path, step: int, *, complete: bool = True, state: bool = True) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"w")
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if complete:
        mark_complete(path, step)
    return path


def test_only_checkpoints_with_marker_and_state_are_picked(tmp_path):
    make_checkpoint(tmp_path, 2)
    good = make_checkpoint(tmp_path, 10)
    make_checkpoint(tmp_path, 12, complete=False)  # killed while saving: no marker
    (tmp_path / "checkpoint-14").mkdir()  # killed before anything was written
    make_checkpoint(tmp_path, 16, state=False)  # marker without trainer state is not trusted either
    (tmp_path / "checkpoint-x").mkdir()
    assert last_complete_checkpoint(tmp_path) == good
    assert not is_complete(tmp_path / "checkpoint-12")
    removed = discard_incomplete(tmp_path)
    assert sorted(p.name for p in removed) == ["checkpoint-12", "checkpoint-14", "checkpoint-16"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-2", "checkpoint-x"]


def test_no_checkpoint(tmp_path):
    assert last_complete_checkpoint(tmp_path) is None
    assert last_complete_checkpoint(tmp_path / "missing") is None
    make_checkpoint(tmp_path, 3, complete=False)
    assert last_complete_checkpoint(tmp_path) is None


def test_marker_lists_the_files(tmp_path):
    path = make_checkpoint(tmp_path, 5)
    info = json.loads((path / COMPLETE_MARKER).read_text())
    assert info["globalStep"] == 5
    assert info["files"] == ["model.safetensors", "trainer_state.json"]


def test_rotation_keeps_newest_and_protected_and_ignores_incomplete(tmp_path):
    for step in (1, 2, 3, 4):
        make_checkpoint(tmp_path, step)
    make_checkpoint(tmp_path, 5, complete=False)
    removed = rotate(tmp_path, keep=2, protect=tmp_path / "checkpoint-1")
    assert sorted(p.name for p in removed) == ["checkpoint-2", "checkpoint-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-4", "checkpoint-5"]
    assert rotate(tmp_path, keep=None) == []


def state(step: int, total: int = 100, epoch: float = 0.5, main: bool = True) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=total, epoch=epoch, is_world_process_zero=main)


class RecordingSink:
    def __init__(self) -> None:
        self.seen: list[dict] = []

    def update(self, progress: dict) -> None:
        self.seen.append(progress)


class BrokenSink:
    def update(self, progress: dict) -> None:
        raise ConnectionError("apiserver unreachable")


def test_progress_is_throttled_and_reaches_every_sink(tmp_path, capsys):
    now = [0.0]
    sink, extra = RecordingSink(), tmp_path / "status" / "p.json"
    reporter = ProgressReporter(tmp_path, [BrokenSink(), sink, JsonFileSink(extra)], interval_s=10.0,
                                clock=lambda: now[0])
    reporter.on_train_begin(None, state(0), None)
    for step in range(1, 30):
        now[0] = float(step)  # one step per second
        reporter.on_log(None, state(step), None, logs={"loss": 3.0 - step / 100})
        reporter.on_step_end(None, state(step), None)
    reporter.on_train_end(None, state(30, epoch=1.0), None)
    steps = [p["step"] for p in sink.seen]
    assert steps == [0, 10, 20, 30]  # first, every 10 s, last
    last = json.loads((tmp_path / PROGRESS_NAME).read_text())
    assert last == sink.seen[-1] == json.loads(extra.read_text())
    assert last["totalSteps"] == 100 and last["percent"] == 30.0 and last["loss"] == 2.71 and last["epoch"] == 1.0
    assert sink.seen[1]["etaSeconds"] == 90  # 10 steps in 10 s, 90 to go
    assert capsys.readouterr().err.count("apiserver unreachable") == 1  # reported once, training goes on


def test_progress_only_on_main_process(tmp_path):
    sink = RecordingSink()
    reporter = ProgressReporter(tmp_path, [sink])
    reporter.on_train_begin(None, state(0, main=False), None)
    assert sink.seen == [] and not (tmp_path / PROGRESS_NAME).exists()


@pytest.mark.parametrize(("elapsed", "done", "left", "eta"), [(10.0, 0, 5, None), (10.0, 5, 5, 10), (3.0, 2, 0, 0)])
def test_eta(elapsed, done, left, eta):
    assert eta_seconds(elapsed, done, left) == eta


def test_snapshot_shape():
    from datetime import UTC, datetime

    snap = snapshot(3, 0, None, None, None, datetime(2026, 1, 1, tzinfo=UTC))
    assert snap == {"step": 3, "totalSteps": 0, "percent": 0.0, "loss": None, "epoch": None, "etaSeconds": None,
                    "updatedAt": "2026-01-01T00:00:00+00:00"}


def test_trainer_log_lines_and_resume_truncation(tmp_path):
    log = TrainerLogCallback(tmp_path)
    log.on_train_begin(None, state(0, total=4), None)
    for step in (1, 2, 3, 4):
        log.on_log(None, state(step, total=4), None,
                   logs={"loss": 2.0 / step, "learning_rate": 1e-3, "epoch": step / 4, "grad_norm": 0.5})
    records = read_trainer_log(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert set(records[0]) == {"step", "total", "loss", "lr", "epoch", "grad_norm", "eta", "elapsed"}
    assert records[1]["loss"] == 1.0 and records[1]["total"] == 4
    # A resumed run from step 2 drops what came after the checkpoint before appending again.
    TrainerLogCallback(tmp_path).on_train_begin(None, state(2, total=4), None)
    assert [r["step"] for r in read_trainer_log(tmp_path)] == [1, 2]
    truncate_trainer_log(tmp_path / "missing", 3)


def test_log_record_keeps_eval_metrics():
    record = log_record({"eval_loss": 1.5, "epoch": 1.0, "total_flos": 9.0}, step=5, total=10, elapsed=2.0, eta=2)
    assert record == {"step": 5, "total": 10, "epoch": 1.0, "eval_loss": 1.5, "eta": 2, "elapsed": 2.0}


def test_loss_plot(tmp_path):
    records = [{"step": s, "loss": 3.0 - 0.1 * s} for s in range(1, 11)] + [{"step": 10, "eval_loss": 2.5}]
    out = plot_loss(records, tmp_path / "loss.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_loss([{"step": 1}], tmp_path / "none.png") is None
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])


def cfg_of(tmp_path, **keys):
    from kubetune.config import config_from_flat

    return config_from_flat({"model_name_or_path": "m", "dataset": "d", "output_dir": str(tmp_path), **keys})


def test_resume_auto_picks_last_complete_and_cleans_incomplete(tmp_path):
    from kubetune.train.outputs import clean_output_dir, resume_checkpoint

    make_checkpoint(tmp_path, 4)
    make_checkpoint(tmp_path, 8, complete=False)
    cfg = cfg_of(tmp_path)
    assert cfg.run.resume == "auto"
    assert clean_output_dir(cfg, tmp_path) == [tmp_path / "checkpoint-8"]
    assert resume_checkpoint(cfg, tmp_path) == tmp_path / "checkpoint-4"


def test_fresh_start_clears_the_previous_run(tmp_path):
    from kubetune.artifacts import MANIFEST_NAME
    from kubetune.train.outputs import clean_output_dir, resume_checkpoint

    make_checkpoint(tmp_path, 4)
    (tmp_path / "trainer_log.jsonl").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("mine")
    cfg = cfg_of(tmp_path, resume="never")
    assert resume_checkpoint(cfg, tmp_path) is None
    clean_output_dir(cfg, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # only what kubetune wrote goes
    (tmp_path / MANIFEST_NAME).write_text("{}")
    with pytest.raises(Exception, match="already holds a finished artifact"):
        clean_output_dir(cfg_of(tmp_path), tmp_path)
    clean_output_dir(cfg_of(tmp_path, overwrite_output_dir=True), tmp_path)
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_explicit_checkpoint_must_be_complete(tmp_path):
    from kubetune.train.outputs import OutputError, resume_checkpoint

    good, bad = make_checkpoint(tmp_path, 2), make_checkpoint(tmp_path, 3, complete=False)
    assert resume_checkpoint(cfg_of(tmp_path, resume_from_checkpoint=str(good)), tmp_path) == good
    with pytest.raises(OutputError, match="not a complete checkpoint"):
        resume_checkpoint(cfg_of(tmp_path, resume_from_checkpoint=str(bad)), tmp_path)


def test_manifest_identity_from_the_run_config(tmp_path):
    from kubetune.train.outputs import manifest_for

    cfg = cfg_of(tmp_path, finetuning_type="qlora", quantization_bit=4, created_by_kind="FineTuneJob",
                 created_by_name="support", created_by_namespace="team-a", created_by_uid="1234",
                 base_model_uri="hf://org/base", base_model_revision="v1")
    manifest = manifest_for(cfg, {"train_loss": 1.5, "epoch": 1.0})
    assert manifest.artifact_type == "lora-adapter" and manifest.method == "qlora" and manifest.stage == "sft"
    assert manifest.quantization.bits == 4 and manifest.base_model.uri == "hf://org/base"
    assert manifest.created_by.name == "support" and manifest.created_by.uid == "1234"
    assert manifest.metrics == {"train_loss": 1.5, "epoch": 1.0}
    full = manifest_for(cfg_of(tmp_path, finetuning_type="freeze"), {})
    assert full.artifact_type == "full-model" and full.base_model.uri == "m"


def test_cli_adds_a_file_sink_for_progress_file(tmp_path):
    from kubetune.train.cli import progress_sinks

    sinks = progress_sinks(cfg_of(tmp_path, progress_file=str(tmp_path / "status.json")))
    files = [s for s in sinks if isinstance(s, JsonFileSink)]
    assert [s.path for s in files] == [tmp_path / "status.json"]
    files[0].update({"step": 1})
    assert json.loads((tmp_path / "status.json").read_text()) == {"step": 1}
