"""Shared pieces of the runtime config models: the strict base class and comma-separated list fields."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class CommaSeparated:
    """Marker: the field is a list that LLaMA-Factory YAML writes as one comma-separated string (``a,b``)."""


COMMA = CommaSeparated()


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_floats(value: Any) -> Any:
    parts = _split(value)
    return [float(p) for p in parts] if isinstance(value, str) else parts


StrList = Annotated[list[str], BeforeValidator(_split), COMMA]
FloatList = Annotated[list[float], BeforeValidator(_split_floats), COMMA]


class ConfigGroup(BaseModel):
    """One concern of the runtime config. Field names are the flat YAML keys; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
