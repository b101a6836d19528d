"""metav1 conditions as plain dicts: set one (keeping lastTransitionTime when its status did not change), read
one, and list what changed between two statuses (for Events)."""

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
        "type": cond.type,
        "status": cond.status_text,
        "reason": cond.reason,
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


def changed(old: Conditions | None, new: Conditions | None) -> list[dict[str, Any]]:
    """Conditions of ``new`` whose status or reason differ from ``old`` (new ones included)."""
    out = []
    for cond in new or []:
        before = get_condition(old, cond["type"])
        if before is None or (before.get("status"), before.get("reason")) != (cond["status"], cond["reason"]):
            out.append(cond)
    return out
