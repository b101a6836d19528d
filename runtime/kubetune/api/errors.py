"""Errors for people: every problem names the file, line and field path and says what was expected."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import ErrorDetails


@dataclass(frozen=True)
class FieldError:
    """One problem in one document."""

    path: str
    message: str
    file: str = "<input>"
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '<document>'}: {self.message}"


def _join(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: ErrorDetails) -> str:
    msg = str(err["msg"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; see `kubectl explain` or docs/api.md)"
    if kind == "missing":
        return "required field is missing"
    if kind in ("cel_rule",):
        return msg
    got = err.get("input")
    if got is not None and not isinstance(got, dict | list):
        return f"{msg} (got {got!r})"
    return msg


def field_errors(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[FieldError]:
    """Flatten a pydantic ValidationError into FieldErrors with dotted camelCase paths."""
    out = []
    for err in exc.errors():
        loc = prefix + tuple(p for p in err["loc"] if p != "__root__")
        extra = (err.get("ctx") or {}).get("field_path") or ""
        path = _join(loc) + (extra if extra.startswith(".") or not extra else "." + extra)
        out.append(FieldError(path=path.lstrip("."), message=_describe(err)))
    return out
