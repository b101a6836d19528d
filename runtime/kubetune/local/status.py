"""Status of locally run objects in the CRD's shape, and the lines people see when it changes.

A :class:`Tracker` owns one record's ``status``. The executors of ``kubetune run`` describe what they see and
derive the status with the lifecycle's functions (:mod:`kubetune.lifecycle`), the ones the operator uses;
:meth:`Tracker.apply` writes such a derived status, :meth:`Tracker.set` a lifecycle verdict (admission). Either
saves the record and prints a line when the phase or reason changed::

    FineTuneJob/quickstart-sft   Pending -> Running   Running: training 600 steps on cpu
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubetune.api.conditions import Reason
from kubetune.lifecycle.conditions import Cond, Verdict, apply_conditions, set_condition
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

    @property
    def generation(self) -> int:
        return self.record.generation

    def set(self, phase: str, reason: Reason | str, message: str, conds: list[Cond], **fields: Any) -> None:
        """Set a lifecycle verdict (its conditions and the health conditions, phase, reason, message) and extra status
        ``fields`` (None removes a field); save."""
        before = copy.deepcopy(self.record.status)
        status = self.record.status
        health = with_health(self.record.key[1], Verdict(phase, str(reason), message, conds))
        status["conditions"] = apply_conditions(status.get("conditions"), health, self.clock(), self.record.generation)
        status.update(observedGeneration=self.record.generation, phase=phase, reason=str(reason), message=message)
        self._finish(before, fields)

    def apply(self, derived: dict[str, Any], owned: tuple[str, ...], **fields: Any) -> None:
        """Write a status the lifecycle derived from ``self.status``: each key in ``owned`` is set from ``derived``
        or removed, as the operator's status patch does; extra ``fields`` the lifecycle does not derive are set
        (None removes). Saves; prints a line when the phase or reason changed."""
        before = copy.deepcopy(self.record.status)
        status = self.record.status
        for key in owned:
            if key in derived:
                status[key] = derived[key]
            else:
                status.pop(key, None)
        self._finish(before, fields)

    def _finish(self, before: dict[str, Any], fields: dict[str, Any]) -> None:
        status = self.record.status
        for key, value in fields.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        self.work.save(self.record)
        phase, reason = status.get("phase"), status.get("reason")
        if (before.get("phase"), before.get("reason")) != (phase, reason):
            self.say(transition_line(self.ref, before.get("phase"), str(phase), str(reason), status.get("message", "")))

    def update(self, **fields: Any) -> None:
        """Change status fields other than phase and conditions (progress, url); save, print nothing."""
        self.record.status.update(fields)
        self.work.save(self.record)
