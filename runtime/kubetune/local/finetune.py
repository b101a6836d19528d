"""Run a FineTuneJob on this machine: the mapping the operator renders into the pod's config, then the train stage.

``runtime_config_from_finetunejob`` turns the spec into the runtime config (the same function the operator uses for
the pod's ConfigMap); the stage from :data:`kubetune.train.stages.STAGES` trains with it in this process. The output
directory is ``<output.uri>/<name>-<uid8>/`` with the object's local uid, so a rerun of the same spec finds its
checkpoints and resumes (``resume: auto``); Ctrl-C leaves the object Suspended with its complete checkpoints.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import FineTuneJobPhase as P
from kubetune.api.conditions import Reason as R
from kubetune.api.finetunejob import FineTuneJob
from kubetune.artifacts import MANIFEST_NAME, ArtifactError, read_manifest
from kubetune.data.check import check_data
from kubetune.data.formats import DataFormatError
from kubetune.lifecycle import runs
from kubetune.lifecycle.inputs import ACCEPTED, unresolved_status
from kubetune.local.context import LocalContext, Outcome, output_name
from kubetune.local.environment import spec_environment
from kubetune.local.plan import LocalObject, references
from kubetune.local.progress import LocalProgressSink
from kubetune.local.sources import Artifact, absolute_uri, resolve_reference
from kubetune.local.status import Cond, Tracker, now_text
from kubetune.local.storage import stage_inputs, stage_output
from kubetune.local.workdir import Record
from kubetune.status_reporter import latest_checkpoint
from kubetune.uris import UriError, UriResolver

INPUTS_READY = Cond(T.INPUTS_READY, True, R.RESOLVED, "inputs resolved")


def already_succeeded(record: Record, output_dir: Path) -> bool:
    """A finished run stays finished: Succeeded in the record and its manifest still there."""
    return record.phase == P.SUCCEEDED and (output_dir / MANIFEST_NAME).is_file()


def output_location(obj: LocalObject, record: Record, resolver: UriResolver, parent_uri: str) -> tuple[str, Path]:
    """A producer's output URI (``<parent_uri>/<name>-<uid8>/``, as the operator names it) and its local folder."""
    uri = absolute_uri(resolver.join(parent_uri, output_name(obj, record.uid)), resolver) + "/"
    return uri, Path(resolver.resolve(uri))


def done_before(record: Record, tracker: Tracker, ctx: LocalContext, output_uri: str, output_dir: Path) -> bool:
    """True (and says so) when this object already succeeded with the same spec and its output is intact."""
    if not already_succeeded(record, output_dir):
        return False
    ctx.say(f"{tracker.ref:<34} Succeeded (unchanged since it ran; output {output_uri})")
    return True


def restart_conditions(record: Record) -> list[Cond]:
    """Conditions of an earlier attempt that a new attempt clears (a rerun after Ctrl-C or a failure)."""
    held = {c.get("type") for c in record.status.get("conditions") or [] if c.get("status") == "True"}
    out = []
    if T.SUSPENDED in held:
        out.append(Cond(T.SUSPENDED, False, R.RESUMED, "resumed"))
    for ctype in (T.FAILED, T.SUCCEEDED):
        if ctype in held:
            out.append(Cond(ctype, False, R.RESTARTING, "running again"))
    return out


def _inputs(obj: LocalObject, ctx: LocalContext, tracker: Tracker) -> dict[tuple[str, str], Artifact] | None:
    """The referenced artifacts, or None after recording why the job cannot start."""
    found: dict[tuple[str, str], Artifact] = {}
    for kind, name in references(obj.resource):
        resolution = resolve_reference(kind, name, obj.namespace, ctx.work)
        if isinstance(resolution, Artifact):
            found[(kind, name)] = resolution
            continue
        waiting = unresolved_status("FineTuneJob", resolution)
        tracker.set(waiting.phase, waiting.reason, waiting.message, waiting.conditions)
        return None
    return found


def _config(obj: LocalObject, record: Record, ctx: LocalContext, output_dir: Path,
            inputs: dict[tuple[str, str], Artifact]):  # type: ignore[no-untyped-def]
    from kubetune.config.mapping.train import runtime_config_from_finetunejob

    job = obj.resource
    assert isinstance(job, FineTuneJob)
    job = job.model_copy(update={"metadata": {**job.metadata, "namespace": obj.namespace, "uid": record.uid}})
    resolver = ctx.resolver(obj)
    return runtime_config_from_finetunejob(job, output_dir=str(output_dir), resolve=resolver.resolve,
                                           resolve_ref=lambda kind, name: inputs[(kind, name)].uri)


def _known_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "this spec cannot run here": reported without a traceback."""
    from kubetune.model.adapters import MethodError
    from kubetune.model.loader import ModelLoadError
    from kubetune.train.distributed import LaunchError
    from kubetune.train.outputs import OutputError
    from kubetune.train.stages import StageNotAvailable

    return (LaunchError, MethodError, ModelLoadError, OutputError, StageNotAvailable, ArtifactError, OSError,
            DataFormatError)


def _fail(tracker: Tracker, reason: R, message: str, accepted: bool = True) -> Outcome:
    accept = ACCEPTED if accepted else Cond(T.ACCEPTED, False, reason, message)
    end = runs.failed(reason, message)
    tracker.set(end.phase, end.reason, end.message, [accept, *end.conditions], completionTime=now_text())
    return Outcome.BLOCKED if not accepted else Outcome.FAILED


def run_finetunejob(obj: LocalObject, record: Record, tracker: Tracker, ctx: LocalContext) -> Outcome:
    """Train ``obj`` (a FineTuneJob) here, keeping its record current. Returns how it ended."""
    from kubetune.config import ConfigError

    job = obj.resource
    assert isinstance(job, FineTuneJob)
    resolver = ctx.resolver(obj)
    try:
        output_uri, output_dir = output_location(obj, record, resolver, job.spec.output.uri)
    except UriError as exc:  # a pvc:// output that leaves its claim: nothing is written
        return _fail(tracker, R.INVALID_SPEC, f"spec.output.uri: {exc}", accepted=False)
    if done_before(record, tracker, ctx, output_uri, output_dir):
        return Outcome.SUCCEEDED
    inputs = _inputs(obj, ctx, tracker)
    if inputs is None:
        return Outcome.BLOCKED
    try:
        cfg = _config(obj, record, ctx, output_dir, inputs)
    except (ConfigError, UriError) as exc:
        return _fail(tracker, R.INVALID_SPEC, str(exc), accepted=False)
    problem = stage_inputs(job.spec, ctx.mirror_root, [a.uri for a in inputs.values()], ctx.say)
    if problem:
        return _fail(tracker, R.FAILED, f"inputs: {problem}")
    try:
        check_data(cfg)  # seconds, where loading the stack and the model first took tens of seconds
    except DataFormatError as exc:
        return _fail(tracker, R.FAILED, f"data: {exc}")

    restarted = record.phase in (P.RUNNING, P.SUSPENDED, P.FAILED)
    message = f"training ({job.spec.stage} {job.spec.method}) into {output_uri}"
    tracker.set(P.RUNNING, R.RUNNING, message,
                [ACCEPTED, INPUTS_READY, Cond(T.RUNNING, True, R.RUNNING, message), *restart_conditions(record)],
                startTime=record.status.get("startTime") or now_text(),
                restarts=int(record.status.get("restarts") or 0) + int(restarted),
                output=None, completionTime=None, evaluation=None)
    return _train(cfg, tracker, ctx, output_dir, output_uri, job)


def _train(cfg, tracker: Tracker, ctx: LocalContext, output_dir: Path, output_uri: str,  # type: ignore[no-untyped-def]
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
        end = runs.suspended(message)
        tracker.set(end.phase, end.reason, end.message, end.conditions, latestCheckpoint=checkpoint)
        return Outcome.INTERRUPTED
    except _known_errors() as exc:
        return _fail(tracker, R.FAILED, str(exc))
    except Exception as exc:
        traceback.print_exc()
        return _fail(tracker, R.FAILED, f"training failed: {exc}")
    manifest = read_manifest(output_dir)
    problem = stage_output(job.spec, ctx.mirror_root, output_uri, ctx.say)
    if problem:
        return _fail(tracker, R.FAILED, f"output: {problem}")
    output = {"uri": output_uri, "artifactType": manifest.artifact_type,
              "baseModel": manifest.base_model.model_dump(exclude_none=True)}
    loss = loss_summary(result)
    message = f"trained {result.global_step} steps{', ' + loss if loss else ''}"
    end = runs.succeeded(message)
    tracker.set(end.phase, end.reason, end.message, end.conditions, output=output, completionTime=now_text(),
                latestCheckpoint=latest_checkpoint(str(output_dir), output_uri))
    return Outcome.SUCCEEDED
