"""How a one-shot run (a FineTuneJob's training, a ModelExport's export) goes and ends, in its status.

The operator sees the run in its launcher's status (a PyTorchJob or Job), ``kubetune run`` in the process it runs;
each executor describes what it sees as a :class:`RunState` and reports it through these functions, so a run reads
the same wherever it ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle.conditions import Cond, Conditions, Verdict

SUCCEEDED, FAILED, SUSPENDED, PENDING = "Succeeded", "Failed", "Suspended", "Pending"
CREATED, RUNNING, RESTARTING = "Created", "Running", "Restarting"
TERMINAL = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class RunState:
    """Where a run is: Created, Running, Restarting, Suspended, Succeeded or Failed.

    Attributes:
        state: one of the constants above.
        reason: why (a launcher's condition reason, BackoffLimitExceeded, DeadlineExceeded...).
        message: what the launcher or process says.
        start_time, completion_time: when the launcher says it started and finished.
        failures: attempts that failed before this one (a batch Job counts failed pods, ``kubetune run`` counts
            its reruns); None when the executor does not count.
        queue: the Kueue LocalQueue a Suspended launcher is in: it waits there until its ClusterQueue admits it.
    """

    state: str
    reason: str = ""
    message: str = ""
    start_time: str | None = None
    completion_time: str | None = None
    failures: int | None = None
    queue: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def is_terminal(status: Mapping[str, Any] | None) -> bool:
    """A finished run stays finished: the spec is immutable, so nothing can make it run again."""
    return (status or {}).get("phase") in (SUCCEEDED, FAILED)


def failure_reason(run: RunState) -> str:
    """The reason a failed run reports: the launcher's when it names a limit, else Failed."""
    return run.reason if run.reason in (R.BACKOFF_LIMIT_EXCEEDED, R.DEADLINE_EXCEEDED) else R.FAILED


def succeeded(message: str) -> Verdict:
    return Verdict(SUCCEEDED, R.SUCCEEDED, message,
                   [Cond(T.RUNNING, False, R.SUCCEEDED, message), Cond(T.SUCCEEDED, True, R.SUCCEEDED, message)])


def failed(reason: str, message: str) -> Verdict:
    """``reason`` says why (Failed, BackoffLimitExceeded, DeadlineExceeded, InvalidSpec...); Running says Failed."""
    return Verdict(FAILED, reason, message,
                   [Cond(T.RUNNING, False, R.FAILED, message), Cond(T.FAILED, True, reason, message)])


def suspended(message: str) -> Verdict:
    """Stopped with its checkpoints kept (runPolicy.suspend in the cluster, Ctrl-C locally); it resumes."""
    return Verdict(SUSPENDED, R.SUSPENDED, message,
                   [Cond(T.RUNNING, False, R.SUSPENDED, message), Cond(T.SUSPENDED, True, R.SUSPENDED, message)])


def queued(queue: str, what: str) -> Verdict:
    """Waiting in Kueue LocalQueue ``queue``: the launcher stays suspended until its ClusterQueue admits it."""
    message = (f"queued: {what} waits in queue {queue} until there is room in its quota; it starts by itself "
               f"when admitted (kubectl get workloads shows its place)")
    return Verdict(PENDING, R.QUEUED, message, [Cond(T.RUNNING, False, R.QUEUED, message)])


def restart_conditions(previous: Conditions | None) -> list[Cond]:
    """Conditions of an earlier attempt that a new attempt clears: Suspended (resumed) and, when a local run is
    started again after a failure or an interruption, Failed and Succeeded."""
    held = {c.get("type") for c in previous or [] if c.get("status") == "True"}
    out = [Cond(T.SUSPENDED, False, R.RESUMED, "resumed")] if T.SUSPENDED in held else []
    return out + [Cond(ctype, False, R.RESTARTING, "running again") for ctype in (T.FAILED, T.SUCCEEDED)
                  if ctype in held]
