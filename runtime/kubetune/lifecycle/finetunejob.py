"""A FineTuneJob's status from its acceptance, its inputs and its run.

The operator observes the run through its launcher (a PyTorchJob or an indexed Job), ``kubetune run`` through the
training it runs in-process; both describe it as a :class:`~kubetune.lifecycle.runs.RunState` and derive the status
here. Progress, latestCheckpoint and evaluation are the runtime's (it writes them while it trains), not derived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import FineTuneJobPhase as P
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle import runs
from kubetune.lifecycle.conditions import Cond, Verdict, apply_conditions, get_condition
from kubetune.lifecycle.health import with_health
from kubetune.lifecycle.inputs import ACCEPTED, Rejection, input_status
from kubetune.lifecycle.runs import RunState
from kubetune.lifecycle.sources import Unresolved

KIND = "FineTuneJob"
OWNED = ("observedGeneration", "phase", "reason", "message", "conditions", "trainingJob", "restarts", "startTime",
         "completionTime", "output")
INPUTS_READY = Cond(T.INPUTS_READY, True, R.RESOLVED, "inputs resolved")
SUSPEND_MESSAGE = "suspended: pods are deleted until runPolicy.suspend is unset"


@dataclass(frozen=True)
class TrainingObservation:
    """Everything the status depends on, gathered by the executor.

    Attributes:
        generation, now: the object's generation and the current time (RFC 3339).
        launcher_kind, launcher_name: what runs the training (PyTorchJob/Job in the cluster); an empty kind means
            the executor runs it itself (no ``trainingJob`` reference).
        rejection, unresolved: why it cannot run (yet).
        launcher: the run, None before it was created.
        suspend: ``runPolicy.suspend`` is set.
        output: status.output to publish once the run succeeded.
        note: what the executor says about the run, instead of the launcher-based default message.
    """

    generation: int
    now: str
    launcher_kind: str
    launcher_name: str
    rejection: Rejection | None = None
    unresolved: Unresolved | None = None
    launcher: RunState | None = None
    suspend: bool = False
    output: dict[str, Any] | None = None
    note: str | None = None


def _restarts(prev: dict[str, Any], launcher: RunState | None) -> int:
    count = int(prev.get("restarts") or 0)
    if launcher is None:
        return count
    if launcher.failures is not None:  # a batch Job counts failed pods itself
        return max(count, launcher.failures)
    running = get_condition(prev.get("conditions"), T.RUNNING)
    if launcher.state == runs.RESTARTING and (running or {}).get("reason") != R.RESTARTING:
        return count + 1  # entering Restarting: one more restart
    return count


def _run_verdict(obs: TrainingObservation, prev: dict[str, Any]) -> Verdict:
    """Phase, conditions, reason and message for an accepted run with ready inputs."""
    launcher = obs.launcher
    again = runs.restart_conditions(prev.get("conditions"))
    if launcher is None:
        msg = obs.note or f"creating {obs.launcher_kind} {obs.launcher_name}"
        return Verdict(P.PENDING, R.PENDING, msg, [Cond(T.RUNNING, False, R.PENDING, msg)])
    if launcher.state == runs.SUCCEEDED:
        return runs.succeeded(obs.note or launcher.message or "training finished")
    if launcher.state == runs.FAILED:
        return runs.failed(runs.failure_reason(launcher), launcher.message or f"{obs.launcher_kind} failed")
    if launcher.state == runs.SUSPENDED and launcher.queue and not obs.suspend:
        return runs.queued(launcher.queue, f"{obs.launcher_kind} {obs.launcher_name}")
    if obs.suspend or launcher.state == runs.SUSPENDED:
        return runs.suspended(obs.note or SUSPEND_MESSAGE)
    if launcher.state in (runs.RUNNING, runs.RESTARTING):
        reason = R.RESTARTING if launcher.state == runs.RESTARTING else R.RUNNING
        msg = obs.note or launcher.message or f"{obs.launcher_kind} {obs.launcher_name} is running"
        return Verdict(P.RUNNING, reason, msg, [Cond(T.RUNNING, True, reason, msg), *again])
    msg = obs.note or launcher.message or f"{obs.launcher_kind} {obs.launcher_name} created"
    return Verdict(P.PENDING, R.CREATED, msg, [Cond(T.RUNNING, False, R.CREATED, msg), *again])


def _launcher_ref(kind: str, name: str) -> dict[str, str]:
    return {"apiVersion": "kubeflow.org/v1" if kind == "PyTorchJob" else "batch/v1", "kind": kind, "name": name}


def derive_finetunejob_status(prev: dict[str, Any] | None, obs: TrainingObservation) -> dict[str, Any]:
    """The derived part of the next status (the keys in :data:`OWNED`)."""
    prev = prev or {}
    status: dict[str, Any] = {"observedGeneration": obs.generation, "restarts": _restarts(prev, obs.launcher)}
    verdict = input_status(KIND, obs.rejection, obs.unresolved)
    if verdict is None:
        run = _run_verdict(obs, prev)
        verdict = Verdict(run.phase, run.reason, run.message, [ACCEPTED, INPUTS_READY, *run.conditions])
        if obs.launcher_kind:
            status["trainingJob"] = _launcher_ref(obs.launcher_kind, obs.launcher_name)
    phase = verdict.phase
    conditions = apply_conditions(prev.get("conditions"), with_health(KIND, verdict), obs.now, obs.generation)
    status.update(phase=phase, reason=verdict.reason, message=verdict.message, conditions=conditions)
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
