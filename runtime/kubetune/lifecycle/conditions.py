"""metav1 conditions as plain dicts: set one (keeping lastTransitionTime when its status did not change), read one.

The operator and ``kubetune run`` write conditions through these functions, so a condition means the same in a
status read from the apiserver and in a local record.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Conditions = list[dict[str, Any]]


@dataclass(frozen=True)
class Cond:
    """A condition to set; the timestamp and generation are added by :func:`set_condition`."""

    type: str
    status: bool | None  # None = Unknown
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else str(bool(self.status))


def get_condition(conditions: Conditions | None, ctype: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == ctype), None)


def is_true(conditions: Conditions | None, ctype: str) -> bool:
    cond = get_condition(conditions, ctype)
    return bool(cond and cond.get("status") == "True")


def set_condition(conditions: Conditions | None, cond: Cond, now: str, generation: int | None) -> Conditions:
    """Return ``conditions`` with ``cond`` set. lastTransitionTime moves only when the status changes."""
    out = copy.deepcopy(list(conditions or []))
    previous = get_condition(out, cond.type)
    entry: dict[str, Any] = {
        "type": str(cond.type),
        "status": cond.status_text,
        "reason": str(cond.reason),
        "message": cond.message,
        "lastTransitionTime": now,
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    if previous is not None:
        if previous.get("status") == entry["status"] and previous.get("lastTransitionTime"):
            entry["lastTransitionTime"] = previous["lastTransitionTime"]
        out[out.index(previous)] = entry
    else:
        out.append(entry)
    return out


def apply_conditions(conditions: Conditions | None, conds: list[Cond], now: str, generation: int | None) -> Conditions:
    for cond in conds:
        conditions = set_condition(conditions, cond, now, generation)
    return list(conditions or [])


@dataclass(frozen=True)
class Verdict:
    """A status decision: phase, top-level reason and message, and the conditions to set."""

    phase: str
    reason: str
    message: str
    conditions: list[Cond]
