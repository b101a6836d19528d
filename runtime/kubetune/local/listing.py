"""``kubetune run --list``: the objects of a work directory as a table, like ``kubectl get kubetune``."""

from __future__ import annotations

from collections.abc import Sequence

from kubetune.local.workdir import Record

COLUMNS = ("NAMESPACE", "KIND", "NAME", "PHASE", "REASON", "PROGRESS", "OUTPUT / URL")


def row(record: Record) -> tuple[str, ...]:
    namespace, kind, name = record.key
    status = record.status
    progress = status.get("progress") or {}
    shown = f"{progress.get('percent', 0)}% loss {progress.get('loss', '-')}" if progress else ""
    where = status.get("url") or (status.get("output") or {}).get("uri") or ""
    return (namespace, kind, name, status.get("phase") or "", status.get("reason") or "", shown, where)


def listing(records: Sequence[Record]) -> str:
    """A fixed-width table, one row per record (a note when there is none)."""
    if not records:
        return "no objects have run in this work directory"
    rows = [COLUMNS, *(row(r) for r in records)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)
