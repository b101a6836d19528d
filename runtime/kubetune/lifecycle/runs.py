"""How a one-shot run (a FineTuneJob's training, a ModelExport's export) ends, in its status.

The operator sees the end in the launcher's status (a PyTorchJob or Job), ``kubetune run`` in the process it ran;
both report it through these functions, so a finished run reads the same wherever it ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle.conditions import Cond, Verdict

SUCCEEDED, FAILED, SUSPENDED, PENDING = "Succeeded", "Failed", "Suspended", "Pending"


def is_terminal(status: Mapping[str, Any] | None) -> bool:
    """A finished run stays finished: the spec is immutable, so nothing can make it run again."""
    return (status or {}).get("phase") in (SUCCEEDED, FAILED)


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
