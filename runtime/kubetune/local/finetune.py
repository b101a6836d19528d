"""Run a FineTuneJob on this machine: the config the operator renders into the pods, then the train stage.

:func:`~kubetune.config.mapping.train.train_pod_config` turns the spec into the runtime config file the pods run
(the operator renders it into their ConfigMap); it is read back as ``kubetune train`` reads it, and the stage from
:data:`kubetune.train.stages.STAGES` trains with it in this process. The output
directory is ``<output.uri>/<name>-<uid8>/`` with the object's local uid, so a rerun of the same spec finds its
checkpoints and resumes (``resume: auto``); Ctrl-C leaves the object Suspended with its complete checkpoints.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.api.conditions import FineTuneJobPhase as P
from kubetune.api.conditions import Reason as R
from kubetune.api.finetunejob import FineTuneJob
from kubetune.artifacts import MANIFEST_NAME, ArtifactError, read_manifest
from kubetune.data.check import check_data
from kubetune.data.formats import DataFormatError
from kubetune.lifecycle import runs
from kubetune.lifecycle.finetunejob import OWNED, TrainingObservation, derive_finetunejob_status
from kubetune.lifecycle.inputs import Rejection, config_rejection
from kubetune.lifecycle.outputs import output_uri as output_location_uri
from kubetune.lifecycle.runs import RunState
from kubetune.lifecycle.sources import references
from kubetune.local.context import LocalContext, Outcome
from kubetune.local.environment import spec_environment
from kubetune.local.plan import LocalObject
from kubetune.local.progress import LocalProgressSink
from kubetune.local.sources import Artifact, Unresolved, resolve_reference
from kubetune.local.status import Tracker
from kubetune.local.storage import stage_inputs, stage_output
from kubetune.local.workdir import Record
from kubetune.status_reporter import latest_checkpoint
from kubetune.uris import UriError, UriResolver, absolute_uri

if TYPE_CHECKING:
    from kubetune.config.runtime import RuntimeConfig


def already_succeeded(record: Record, output_dir: Path) -> bool:
    """A finished run stays finished: Succeeded in the record and its manifest still there."""
    return record.phase == P.SUCCEEDED and (output_dir / MANIFEST_NAME).is_file()


def output_location(obj: LocalObject, record: Record, resolver: UriResolver, parent_uri: str) -> tuple[str, Path]:
    """A producer's output URI (``<parent_uri>/<name>-<uid8>/``, as the operator names it) and its local folder."""
    uri = absolute_uri(output_location_uri(parent_uri, obj.name, record.uid), resolver)
    return uri, Path(resolver.resolve(uri))


def done_before(record: Record, tracker: Tracker, ctx: LocalContext, output_uri: str, output_dir: Path) -> bool:
    """True (and says so) when this object already succeeded with the same spec and its output is intact."""
    if not already_succeeded(record, output_dir):
        return False
    ctx.say(f"{tracker.ref:<34} Succeeded (unchanged since it ran; output {output_uri})")
    return True


def report(tracker: Tracker, *, run: RunState | None = None, fields: dict[str, Any] | None = None,
           **observed: Any) -> None:
    """Derive the status from what this run observed, with the function the operator uses, and record it."""
    obs = TrainingObservation(generation=tracker.generation, now=tracker.clock(), launcher_kind="",
                              launcher_name=tracker.ref, launcher=run, **observed)
    tracker.apply(derive_finetunejob_status(tracker.status, obs), OWNED, **(fields or {}))


def _inputs(obj: LocalObject, ctx: LocalContext, tracker: Tracker) -> dict[tuple[str, str], Artifact] | None:
    """The referenced artifacts, or None after recording why the job cannot start."""
    found: dict[tuple[str, str], Artifact] = {}
    for kind, name in references(obj.resource):
        resolution = resolve_reference(kind, name, obj.namespace, ctx.work)
        if isinstance(resolution, Unresolved):
            report(tracker, unresolved=resolution)
            return None
        found[(kind, name)] = resolution
    return found


def train_document(obj: LocalObject, record: Record, ctx: LocalContext, output_dir: Path,
                   inputs: dict[tuple[str, str], Artifact]) -> dict[str, Any]:
    """The runtime config file the training pods would run for ``obj`` (the pod contract), with local paths."""
    from kubetune.config.mapping.train import train_pod_config

    job = obj.resource
    assert isinstance(job, FineTuneJob)
    job = job.model_copy(update={"metadata": {**job.metadata, "namespace": obj.namespace, "uid": record.uid}})
    return train_pod_config(job, output_dir=str(output_dir), resolve=ctx.resolver(obj).resolve,
                            resolve_ref=lambda kind, name: inputs[(kind, name)].uri)


def _config(obj: LocalObject, record: Record, ctx: LocalContext, output_dir: Path,
            inputs: dict[tuple[str, str], Artifact]) -> RuntimeConfig:
    """The runtime config, read from the pod contract as ``kubetune train FILE`` reads its file."""
    from kubetune.config.loader import config_from_flat

    return config_from_flat(train_document(obj, record, ctx, output_dir, inputs), file=f"FineTuneJob {obj.name}")


def _known_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "this spec cannot run here": reported without a traceback."""
    from kubetune.model.adapters import MethodError
    from kubetune.model.loader import ModelLoadError
    from kubetune.train.distributed import LaunchError
    from kubetune.train.outputs import OutputError
    from kubetune.train.stages import StageNotAvailable

    return (LaunchError, MethodError, ModelLoadError, OutputError, StageNotAvailable, ArtifactError, OSError,
            DataFormatError)


def _reject(tracker: Tracker, rejection: Rejection) -> Outcome:
    report(tracker, rejection=rejection)
    return Outcome.BLOCKED


def _fail(tracker: Tracker, message: str) -> Outcome:
    report(tracker, run=RunState(runs.FAILED, R.FAILED, message))
    return Outcome.FAILED


def run_finetunejob(obj: LocalObject, record: Record, tracker: Tracker, ctx: LocalContext) -> Outcome:
    """Train ``obj`` (a FineTuneJob) here, keeping its record current. Returns how it ended."""
    from kubetune.config import ConfigError

    job = obj.resource
    assert isinstance(job, FineTuneJob)
    resolver = ctx.resolver(obj)
    try:
        output_uri, output_dir = output_location(obj, record, resolver, job.spec.output.uri)
    except UriError as exc:  # a pvc:// output that leaves its claim: nothing is written
        return _reject(tracker, Rejection(R.INVALID_SPEC, f"spec.output.uri: {exc}"))
    if done_before(record, tracker, ctx, output_uri, output_dir):
        return Outcome.SUCCEEDED
    inputs = _inputs(obj, ctx, tracker)
    if inputs is None:
        return Outcome.BLOCKED
    try:
        cfg = _config(obj, record, ctx, output_dir, inputs)
    except (ConfigError, UriError) as exc:
        return _reject(tracker, config_rejection(exc))
    problem = stage_inputs(job.spec, ctx.mirror_root, [a.uri for a in inputs.values()], ctx.say)
    if problem:
        return _fail(tracker, f"inputs: {problem}")
    try:
        check_data(cfg)  # seconds, where loading the stack and the model first took tens of seconds
    except DataFormatError as exc:
        return _fail(tracker, f"data: {exc}")

    # a rerun after Ctrl-C or a failure is one more attempt, as a restarted pod is in the cluster
    restarted = record.phase in (P.RUNNING, P.SUSPENDED, P.FAILED)
    attempts = int(record.status.get("restarts") or 0) + 1 if restarted else None
    report(tracker, run=RunState(runs.RUNNING, failures=attempts),
           note=f"training ({job.spec.stage} {job.spec.method}) into {output_uri}", fields={"evaluation": None})
    return _train(cfg, tracker, ctx, output_dir, output_uri, job)


def _train(cfg: RuntimeConfig, tracker: Tracker, ctx: LocalContext, output_dir: Path, output_uri: str,
           job: FineTuneJob) -> Outcome:
    from kubetune.train.context import TrainContext, loss_summary
    from kubetune.train.stages import run_stage

    sink = LocalProgressSink(tracker, output_dir, output_uri, say=None if ctx.console else ctx.say)
    try:
        with spec_environment(job.spec, ctx.say):
            result = run_stage(cfg, TrainContext(sinks=[sink], console=ctx.console, say=ctx.say))
    except KeyboardInterrupt:
        checkpoint = latest_checkpoint(str(output_dir), output_uri)
        step = (tracker.status.get("progress") or {}).get("step", 0)
        message = (f"interrupted at step {step}; run again to resume from {checkpoint}" if checkpoint
                   else f"interrupted at step {step} before the first checkpoint; run again to start over")
        report(tracker, run=RunState(runs.SUSPENDED), note=message, fields={"latestCheckpoint": checkpoint})
        return Outcome.INTERRUPTED
    except _known_errors() as exc:
        return _fail(tracker, str(exc))
    except Exception as exc:
        traceback.print_exc()
        return _fail(tracker, f"training failed: {exc}")
    manifest = read_manifest(output_dir)
    problem = stage_output(job.spec, ctx.mirror_root, output_uri, ctx.say)
    if problem:
        return _fail(tracker, f"output: {problem}")
    output = {"uri": output_uri, "artifactType": manifest.artifact_type,
              "baseModel": manifest.base_model.model_dump(exclude_none=True)}
    loss = loss_summary(result)
    message = f"trained {result.global_step} steps{', ' + loss if loss else ''}"
    report(tracker, run=RunState(runs.SUCCEEDED), note=message, output=output,
           fields={"latestCheckpoint": latest_checkpoint(str(output_dir), output_uri)})
    return Outcome.SUCCEEDED
