"""Read a launcher's (PyTorchJob or batch Job) status into one small shape the parent's status derives from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CREATED = "Created"
RUNNING = "Running"
RESTARTING = "Restarting"
SUSPENDED = "Suspended"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TERMINAL = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class LauncherState:
    """Where the launcher is: Created, Running, Restarting, Suspended, Succeeded or Failed."""

    state: str
    reason: str = ""
    message: str = ""
    start_time: str | None = None
    completion_time: str | None = None
    failures: int | None = None  # failed pods counted by a batch Job; None when the launcher does not count

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def _true_conditions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (body.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def observe_pytorchjob(body: dict[str, Any]) -> LauncherState:
    """PyTorchJob conditions, most decisive first: Failed, Succeeded, Suspended, Restarting, Running, Created.

    A PyTorchJob whose spec asks to be suspended (by the operator or by Kueue) and has no condition yet is Suspended.
    """
    status = body.get("status") or {}
    true = _true_conditions(body)
    for state in (FAILED, SUCCEEDED, SUSPENDED, RESTARTING, RUNNING, CREATED):
        if state in true:
            cond = true[state]
            return LauncherState(state, cond.get("reason") or state, cond.get("message") or "",
                                 status.get("startTime"), status.get("completionTime"))
    if ((body.get("spec") or {}).get("runPolicy") or {}).get("suspend"):
        return LauncherState(SUSPENDED, SUSPENDED, "PyTorchJob suspended", status.get("startTime"))
    return LauncherState(CREATED, CREATED, "PyTorchJob created, waiting for the training operator",
                         status.get("startTime"))


def observe_job(body: dict[str, Any]) -> LauncherState:
    """batch/v1 Job: Complete / Failed / Suspended conditions, then spec.suspend, else Running while pods are active."""
    status = body.get("status") or {}
    true = _true_conditions(body)
    start, end, failures = status.get("startTime"), status.get("completionTime"), int(status.get("failed") or 0)
    for kind, state in (("Failed", FAILED), ("Complete", SUCCEEDED), ("Suspended", SUSPENDED)):
        if kind in true:
            cond = true[kind]
            return LauncherState(state, cond.get("reason") or state, cond.get("message") or "", start, end, failures)
    if (body.get("spec") or {}).get("suspend"):  # before the Job controller confirms it with a condition
        return LauncherState(SUSPENDED, SUSPENDED, "Job suspended", start, end, failures)
    if int(status.get("active") or 0) > 0:
        return LauncherState(RUNNING, RUNNING, f"{status['active']} pod(s) active", start, end, failures)
    return LauncherState(CREATED, CREATED, "Job created, waiting for pods", start, end, failures)


OBSERVERS = {"PyTorchJob": observe_pytorchjob, "Job": observe_job}


def observe(kind: str, body: dict[str, Any] | None) -> LauncherState | None:
    return None if body is None else OBSERVERS[kind](body)
