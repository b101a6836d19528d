"""ModelExport status from its acceptance, its source and its Job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import ModelExportPhase as P
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle import runs
from kubetune.lifecycle.conditions import Cond, apply_conditions
from kubetune.lifecycle.health import with_health
from kubetune.lifecycle.inputs import ACCEPTED, unresolved_status
from kubetune_operator.resolve import Unresolved
from kubetune_operator.status import launchers as L
from kubetune_operator.status.common import Rejection


@dataclass(frozen=True)
class ExportObservation:
    generation: int
    now: str
    job_name: str
    rejection: Rejection | None = None
    unresolved: Unresolved | None = None
    resolved_source: dict[str, Any] | None = None
    job: L.LauncherState | None = None
    output: dict[str, Any] | None = None
    queue_name: str | None = None  # a Kueue LocalQueue: a suspended Job is waiting there to be admitted


def _job_conditions(obs: ExportObservation) -> tuple[str, list[Cond], str, str]:
    job = obs.job
    if job is None or job.state == L.CREATED:
        msg = f"Job {obs.job_name} created, waiting for its pod"
        return P.PENDING, [Cond(T.RUNNING, False, R.CREATED, msg)], R.CREATED, msg
    if job.state == L.SUCCEEDED:
        return runs.succeeded("export finished").parts()
    if job.state == L.FAILED:
        reason = job.reason if job.reason in (R.BACKOFF_LIMIT_EXCEEDED, R.DEADLINE_EXCEEDED) else R.FAILED
        return runs.failed(reason, job.message or "export Job failed").parts()
    if job.state == L.SUSPENDED and obs.queue_name:
        return runs.queued(obs.queue_name, f"Job {obs.job_name}").parts()
    if job.state == L.SUSPENDED:
        msg = job.message or "export Job suspended"
        return P.PENDING, [Cond(T.RUNNING, False, R.SUSPENDED, msg)], R.SUSPENDED, msg
    msg = f"Job {obs.job_name} is running"
    return P.RUNNING, [Cond(T.RUNNING, True, R.RUNNING, msg)], R.RUNNING, msg


def derive_modelexport_status(prev: dict[str, Any] | None, obs: ExportObservation) -> dict[str, Any]:
    prev = prev or {}
    phase: str
    status: dict[str, Any] = {"observedGeneration": obs.generation}
    if obs.rejection is not None:
        conds = [Cond(T.ACCEPTED, False, obs.rejection.reason, obs.rejection.message)]
        phase = P.FAILED if obs.rejection.final else P.PENDING
        reason, message = obs.rejection.reason, obs.rejection.message
    elif obs.unresolved is not None:
        waiting = unresolved_status("ModelExport", obs.unresolved)
        conds, phase, reason, message = waiting.conditions, waiting.phase, waiting.reason, waiting.message
    else:
        conds = [ACCEPTED, Cond(T.SOURCE_READY, True, R.RESOLVED, "source resolved")]
        phase, job_conds, reason, message = _job_conditions(obs)
        conds += job_conds
        status["job"] = {"apiVersion": "batch/v1", "kind": "Job", "name": obs.job_name}
    if obs.resolved_source:
        status["resolvedSource"] = obs.resolved_source
    elif prev.get("resolvedSource"):
        status["resolvedSource"] = prev["resolvedSource"]
    if phase == P.SUCCEEDED and obs.output:
        status["output"] = obs.output
    conds = with_health("ModelExport", phase, reason, message, conds)
    status.update(phase=phase, reason=reason, message=message,
                  conditions=apply_conditions(prev.get("conditions"), conds, obs.now, obs.generation))
    return status
