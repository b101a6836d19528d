"""Run a set of kubetune objects in dependency order, one after the other, as the operator would chain them.

Every object is admitted first (its record created or reused, its first status printed: Pending, or waiting for
an upstream that runs earlier in this command); then each runs through the executor for its kind. A failed object
fails the objects that read from it (``SourceFailed``) while independent objects still run. Ctrl-C stops the whole
run at once, keeping every record and checkpoint so that the same command continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kubetune.lifecycle.inputs import QUEUED, unresolved_status
from kubetune.lifecycle.sources import references
from kubetune.local.context import LocalContext, Outcome
from kubetune.local.export import run_modelexport
from kubetune.local.finetune import run_finetunejob
from kubetune.local.plan import LocalObject, PlanError, order_objects
from kubetune.local.serve import run_inferenceservice
from kubetune.local.sources import Unresolved, resolve_reference
from kubetune.local.status import Tracker
from kubetune.local.workdir import Record

Executor = Callable[[LocalObject, Record, Tracker, LocalContext], Outcome]

EXECUTORS: dict[str, Executor] = {
    "FineTuneJob": run_finetunejob,
    "ModelExport": run_modelexport,
    "InferenceService": run_inferenceservice,
}
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def _first_unresolved(obj: LocalObject, ctx: LocalContext) -> Unresolved | None:
    for kind, name in references(obj.resource):
        resolution = resolve_reference(kind, name, obj.namespace, ctx.work)
        if isinstance(resolution, Unresolved):
            return resolution
    return None


def admit(obj: LocalObject, ctx: LocalContext) -> Tracker:
    """Create or reuse ``obj``'s record and show its status before anything runs."""
    record, new = ctx.work.admit(obj)
    tracker = Tracker(ctx.work, record, ctx.say)
    if new:
        ctx.say(f"{obj.ref:<34} created (uid {record.uid[:8]}, from {obj.file})")
    if not new and obj.kind != "InferenceService" and record.phase in ("Succeeded", "Running", "Suspended"):
        return tracker  # finished runs stay finished; interrupted ones continue when their turn comes
    waiting = _first_unresolved(obj, ctx)
    # a final one fails the object when its turn comes, after the objects before it ran
    verdict = unresolved_status(obj.kind, waiting) if waiting is not None and not waiting.final else QUEUED
    tracker.set(verdict.phase, verdict.reason, verdict.message, verdict.conditions)
    return tracker


def run_objects(objects: Sequence[LocalObject], ctx: LocalContext) -> int:
    """Run ``objects`` here. Returns 0 when all succeeded (or served until stopped), 1 when one failed or could not
    start, 130 when interrupted. Raises PlanError for duplicate names, reference cycles or several
    InferenceServices (each serves in the foreground, so one per command)."""
    ordered = order_objects(objects)
    services = [o for o in ordered if o.kind == "InferenceService"]
    if len(services) > 1:
        from kubetune.api.errors import FieldError

        raise PlanError([FieldError("kind", f"{o.ref}: one InferenceService per `kubetune run` (it serves in the "
                                    "foreground); run the others in their own command with --port", str(o.file),
                                    o.line) for o in services[1:]])
    trackers = [admit(obj, ctx) for obj in ordered]
    failed = False
    for obj, tracker in zip(ordered, trackers, strict=True):
        try:
            outcome = EXECUTORS[obj.kind](obj, tracker.record, tracker, ctx)
        except KeyboardInterrupt:
            outcome = Outcome.INTERRUPTED
        if outcome == Outcome.INTERRUPTED:
            ctx.say(f"interrupted: state kept in {ctx.work.root}; run the same command again to continue")
            return EXIT_INTERRUPTED
        failed = failed or outcome in (Outcome.FAILED, Outcome.BLOCKED)
    return EXIT_FAILED if failed else EXIT_OK
