"""Status of locally run objects in the CRD's shape, and the lines people see when it changes.

A :class:`Tracker` owns one record's ``status``: :meth:`Tracker.set` applies conditions (metav1 semantics:
``lastTransitionTime`` moves only when a condition's status flips), sets phase, reason and message, saves the record
and prints a line when the phase or reason changed::

    FineTuneJob/quickstart-sft   Pending -> Running   Running: training 600 steps on cpu

Reasons and phases are the constants of :mod:`kubetune.api.conditions`, the same the operator writes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubetune.api.conditions import Reason
from kubetune.lifecycle.conditions import Cond, set_condition
from kubetune.lifecycle.health import with_health
from kubetune.local.workdir import Record, WorkDir

__all__ = ["Cond", "Tracker", "now_text", "set_condition", "transition_line"]


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def transition_line(ref: str, old_phase: str | None, phase: str, reason: str, message: str) -> str:
    """The line printed when an object's phase or reason changes."""
    move = f"{old_phase} -> {phase}" if old_phase and old_phase != phase else phase
    return f"{ref:<34} {move:<26} {reason}: {message}".rstrip()


class Tracker:
    """Keeps one object's status, saves it to the work directory and reports changes.

    Args:
        work: the work directory the record lives in.
        record: the object's record (its ``status`` is updated in place).
        say: prints a line for people.
        clock: the current time as RFC 3339 text (tests pass a fixed one).
    """

    def __init__(self, work: WorkDir, record: Record, say: Callable[[str], None] = print,
                 clock: Callable[[], str] = now_text) -> None:
        self.work, self.record, self.say, self.clock = work, record, say, clock

    @property
    def ref(self) -> str:
        _, kind, name = self.record.key
        return f"{kind}/{name}"

    @property
    def status(self) -> dict[str, Any]:
        return self.record.status

    def set(self, phase: str, reason: Reason, message: str, conds: list[Cond], **fields: Any) -> None:
        """Set conditions, phase, reason, message and extra status ``fields`` (None removes a field); save."""
        before = copy.deepcopy(self.record.status)
        status = self.record.status
        now = self.clock()
        for cond in with_health(self.record.key[1], phase, str(reason), message, conds):
            status["conditions"] = set_condition(status.get("conditions") or [], cond, now, self.record.generation)
        status.update(observedGeneration=self.record.generation, phase=phase, reason=str(reason), message=message)
        for key, value in fields.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        self.work.save(self.record)
        if (before.get("phase"), before.get("reason")) != (phase, str(reason)):
            self.say(transition_line(self.ref, before.get("phase"), phase, str(reason), message))

    def update(self, **fields: Any) -> None:
        """Change status fields other than phase and conditions (progress, url); save, print nothing."""
        self.record.status.update(fields)
        self.work.save(self.record)
