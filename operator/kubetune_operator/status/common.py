"""What the operator does with a derived status: the merge patch it writes and the Events it posts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WARNING_PHASES = ("Failed",)


def status_patch(prev: dict[str, Any] | None, new: dict[str, Any], owned: tuple[str, ...]) -> dict[str, Any]:
    """The merge patch turning ``prev`` into ``new`` for the keys the operator owns (None deletes a key).

    Keys the operator does not own (the runtime's ``progress``) are left alone, so the two writers never race.
    """
    prev = prev or {}
    patch: dict[str, Any] = {}
    for key in owned:
        if key in new:
            if new[key] != prev.get(key):
                patch[key] = new[key]
        elif prev.get(key) is not None:
            patch[key] = None
    return patch


@dataclass(frozen=True)
class EventSpec:
    type: str  # Normal or Warning
    reason: str
    message: str


def _rejected(status: dict[str, Any]) -> bool:
    return any(c.get("type") == "Accepted" and c.get("status") == "False" for c in status.get("conditions") or [])


def transition_events(prev: dict[str, Any] | None, new: dict[str, Any]) -> list[EventSpec]:
    """Events for what people watch: a phase change, a new reason for refusing the spec, and each new restart."""
    prev = prev or {}
    events = []
    rejected = _rejected(new)
    if new.get("phase") != prev.get("phase") or (rejected and new.get("reason") != prev.get("reason")):
        kind = "Warning" if new.get("phase") in WARNING_PHASES or rejected else "Normal"
        text = f"{prev.get('phase') or 'New'} -> {new.get('phase')}: {new.get('message') or ''}".strip()
        events.append(EventSpec(kind, new.get("reason") or str(new.get("phase")), text))
    restarts, before = int(new.get("restarts") or 0), int(prev.get("restarts") or 0)
    if restarts > before:
        events.append(EventSpec("Warning", "Restarting", f"training restarted ({restarts} restart(s) so far)"))
    return events
