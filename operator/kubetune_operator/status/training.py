"""FineTuneJob status from its acceptance, its inputs and its launcher (PyTorchJob or Job)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import FineTuneJobPhase as P
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle import runs
from kubetune.lifecycle.conditions import Cond, apply_conditions, get_condition
from kubetune.lifecycle.health import with_health
from kubetune.lifecycle.inputs import ACCEPTED, unresolved_status
from kubetune_operator.resolve import Unresolved
from kubetune_operator.status import launchers as L
from kubetune_operator.status.common import Rejection

OWNED = ("observedGeneration", "phase", "reason", "message", "conditions", "trainingJob", "restarts", "startTime",
         "completionTime", "output")


@dataclass(frozen=True)
class TrainingObservation:
    """Everything the status depends on, gathered by the reconciler."""

    generation: int
    now: str
    launcher_kind: str
    launcher_name: str
    rejection: Rejection | None = None
    unresolved: Unresolved | None = None
    launcher: L.LauncherState | None = None
    suspend: bool = False
    queue_name: str | None = None  # a Kueue LocalQueue: a suspended launcher is waiting there to be admitted
    output: dict[str, Any] | None = None  # status.output to publish once the run succeeded


def _restarts(prev: dict[str, Any], launcher: L.LauncherState | None) -> int:
    count = int(prev.get("restarts") or 0)
    if launcher is None:
        return count
    if launcher.failures is not None:  # a batch Job counts failed pods itself
        return max(count, launcher.failures)
    running = get_condition(prev.get("conditions"), T.RUNNING)
    if launcher.state == L.RESTARTING and (running or {}).get("reason") != R.RESTARTING:
        return count + 1  # entering Restarting: one more restart
    return count


def _launcher_conditions(obs: TrainingObservation, prev: dict[str, Any]) -> tuple[str, list[Cond], str, str]:
    """Phase, conditions, reason and message for an accepted run with ready inputs."""
    launcher = obs.launcher
    was_suspended = get_condition(prev.get("conditions"), T.SUSPENDED)
    resumed = [Cond(T.SUSPENDED, False, R.RESUMED, "resumed")] if was_suspended else []
    if launcher is None:
        msg = f"creating {obs.launcher_kind} {obs.launcher_name}"
        return P.PENDING, [Cond(T.RUNNING, False, R.PENDING, msg)], R.PENDING, msg
    if launcher.state == L.SUCCEEDED:
        return runs.succeeded(launcher.message or "training finished").parts()
    if launcher.state == L.FAILED:
        reason = launcher.reason if launcher.reason in (R.BACKOFF_LIMIT_EXCEEDED, R.DEADLINE_EXCEEDED) else R.FAILED
        return runs.failed(reason, launcher.message or f"{obs.launcher_kind} failed").parts()
    if launcher.state == L.SUSPENDED and obs.queue_name and not obs.suspend:
        return runs.queued(obs.queue_name, f"{obs.launcher_kind} {obs.launcher_name}").parts()
    if obs.suspend or launcher.state == L.SUSPENDED:
        return runs.suspended("suspended: pods are deleted until runPolicy.suspend is unset").parts()
    if launcher.state in (L.RUNNING, L.RESTARTING):
        reason = R.RESTARTING if launcher.state == L.RESTARTING else R.RUNNING
        msg = launcher.message or f"{obs.launcher_kind} {obs.launcher_name} is running"
        return P.RUNNING, [Cond(T.RUNNING, True, reason, msg), *resumed], reason, msg
    msg = launcher.message or f"{obs.launcher_kind} {obs.launcher_name} created"
    return P.PENDING, [Cond(T.RUNNING, False, R.CREATED, msg), *resumed], R.CREATED, msg


def derive_finetunejob_status(prev: dict[str, Any] | None, obs: TrainingObservation) -> dict[str, Any]:
    """The operator-owned part of the next status (progress and latestCheckpoint belong to the runtime)."""
    prev = prev or {}
    phase: str
    status: dict[str, Any] = {"observedGeneration": obs.generation, "restarts": _restarts(prev, obs.launcher)}
    if obs.rejection is not None:
        rej = obs.rejection
        conds = [Cond(T.ACCEPTED, False, rej.reason, rej.message)]
        phase, reason, message = (P.FAILED if rej.final else P.PENDING), rej.reason, rej.message
    elif obs.unresolved is not None:
        waiting = unresolved_status("FineTuneJob", obs.unresolved)
        conds, phase, reason, message = waiting.conditions, waiting.phase, waiting.reason, waiting.message
    else:
        conds = [ACCEPTED, Cond(T.INPUTS_READY, True, R.RESOLVED, "inputs resolved")]
        phase, launcher_conds, reason, message = _launcher_conditions(obs, prev)
        conds += launcher_conds
        status["trainingJob"] = {"apiVersion": "kubeflow.org/v1" if obs.launcher_kind == "PyTorchJob" else "batch/v1",
                                 "kind": obs.launcher_kind, "name": obs.launcher_name}
    conds = with_health("FineTuneJob", phase, reason, message, conds)
    status.update(phase=phase, reason=reason, message=message,
                  conditions=apply_conditions(prev.get("conditions"), conds, obs.now, obs.generation))
    launcher = obs.launcher
    start = prev.get("startTime") or (launcher.start_time if launcher else None)
    if start is None and phase == P.RUNNING:
        start = obs.now
    if start:
        status["startTime"] = start
    if phase in (P.SUCCEEDED, P.FAILED) and launcher is not None:
        status["completionTime"] = prev.get("completionTime") or launcher.completion_time or obs.now
    if phase == P.SUCCEEDED and obs.output:
        status["output"] = obs.output
    return status
