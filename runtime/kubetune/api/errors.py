"""Errors for people: every problem names the file, line and field path and says what was expected."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
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
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind in ("cel_rule",):
        return msg
    got = err.get("input")
    if got is not None and not isinstance(got, dict | list):
        return f"{msg} (got {got!r})"
    return msg


def _unwrap(annotation: Any) -> Any:
    """The model class inside Optional[...], list[...] or dict[str, ...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if found is not None:
                return found
    return None


def known_fields(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The wire names of the fields of the object at ``loc`` (a path below ``model``)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        by_alias = {(f.alias or n): f for n, f in current.model_fields.items()}
        field = by_alias.get(part)
        current = _unwrap(field.annotation) if field else None
    if current is None:
        return []
    return [f.alias or n for n, f in current.model_fields.items()]


def suggestion(word: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower().replace("_", ""): c for c in candidates}
        key = word.lower().replace("_", "")
        match = [lowered[key]] if key in lowered else []
    return f" (did you mean {match[0]}?)" if match else ""


def field_errors(exc: ValidationError, model: type[BaseModel] | None = None) -> list[FieldError]:
    """Flatten a pydantic ValidationError into FieldErrors with dotted camelCase paths.

    With ``model``, an unknown field gets a "did you mean ...?" suggestion from its object's real fields.
    """
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p != "__root__")
        extra = (err.get("ctx") or {}).get("field_path") or ""
        path = _join(loc) + (extra if extra.startswith(".") or not extra else "." + extra)
        message = _describe(err)
        if err["type"] == "extra_forbidden" and model is not None and loc and isinstance(loc[-1], str):
            message += suggestion(loc[-1], known_fields(model, loc[:-1]))
        out.append(FieldError(path=path.lstrip("."), message=message))
    return out
