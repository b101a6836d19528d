"""Read a launcher's (PyTorchJob or batch Job) status into the lifecycle's RunState, which the parent's status
derives from (:mod:`kubetune.lifecycle.runs`).

A launcher the spec asks to be suspended (by the operator, or by Kueue until it admits it) is Suspended before its
controller confirms it with a condition; one that carries a Kueue queue label names that queue in ``RunState.queue``,
so the lifecycle can tell a job waiting in its queue from one suspended on purpose.
"""

from __future__ import annotations

from typing import Any

from kubetune.lifecycle.runs import CREATED, FAILED, RESTARTING, RUNNING, SUCCEEDED, SUSPENDED, RunState
from kubetune_operator.kinds import QUEUE_LABEL


def _true_conditions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (body.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def _queue(body: dict[str, Any]) -> str | None:
    return ((body.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL) or None


def observe_pytorchjob(body: dict[str, Any]) -> RunState:
    """PyTorchJob conditions, most decisive first: Failed, Succeeded, Suspended, Restarting, Running, Created; then
    spec.runPolicy.suspend."""
    status = body.get("status") or {}
    true = _true_conditions(body)
    for state in (FAILED, SUCCEEDED, SUSPENDED, RESTARTING, RUNNING, CREATED):
        if state in true:
            cond = true[state]
            return RunState(state, cond.get("reason") or state, cond.get("message") or "",
                            status.get("startTime"), status.get("completionTime"),
                            queue=_queue(body) if state == SUSPENDED else None)
    if ((body.get("spec") or {}).get("runPolicy") or {}).get("suspend"):
        return RunState(SUSPENDED, SUSPENDED, "PyTorchJob suspended", status.get("startTime"), queue=_queue(body))
    return RunState(CREATED, CREATED, "PyTorchJob created, waiting for the training operator", status.get("startTime"))


def observe_job(body: dict[str, Any]) -> RunState:
    """batch/v1 Job: Complete / Failed / Suspended conditions, then spec.suspend, else Running while pods are active."""
    status = body.get("status") or {}
    true = _true_conditions(body)
    start, end, failures = status.get("startTime"), status.get("completionTime"), int(status.get("failed") or 0)
    for kind, state in (("Failed", FAILED), ("Complete", SUCCEEDED), ("Suspended", SUSPENDED)):
        if kind in true:
            cond = true[kind]
            return RunState(state, cond.get("reason") or state, cond.get("message") or "", start, end, failures,
                            queue=_queue(body) if state == SUSPENDED else None)
    if (body.get("spec") or {}).get("suspend"):  # before the Job controller confirms it with a condition
        return RunState(SUSPENDED, SUSPENDED, "Job suspended", start, end, failures, queue=_queue(body))
    if int(status.get("active") or 0) > 0:
        return RunState(RUNNING, RUNNING, f"{status['active']} pod(s) active", start, end, failures)
    return RunState(CREATED, CREATED, "Job created, waiting for pods", start, end, failures)


OBSERVERS = {"PyTorchJob": observe_pytorchjob, "Job": observe_job}


def observe(kind: str, body: dict[str, Any] | None) -> RunState | None:
    return None if body is None else OBSERVERS[kind](body)
