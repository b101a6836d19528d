"""Fill every field of an API type with a valid, non-default value (wire form) — for "nothing is pruned" checks."""

from __future__ import annotations

import enum
import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

DATE_TIME = "2026-01-02T03:04:05Z"
# Tried after "<field>-sample" for constrained strings; the first that matches the field's pattern is used.
STRING_CANDIDATES = ("True", "SampleReason", "hf://org/sample")


MAP_KEY = "sample"  # the one key of every sample map


def _constraint(info: FieldInfo, name: str) -> Any:
    for item in info.metadata:
        value = getattr(item, name, None)
        if value is not None:
            return value
    return None


def _string(name: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("format") == "date-time":
        return DATE_TIME
    pattern = _constraint(info, "pattern")
    for candidate in (f"{name}-sample", *STRING_CANDIDATES):
        if pattern is None or re.search(pattern, candidate):
            return candidate
    raise ValueError(f"no sample string matches pattern {pattern!r}; add one to STRING_CANDIDATES")


def _integer(info: FieldInfo) -> int:
    low, high = _constraint(info, "ge"), _constraint(info, "le")
    value = (low if low is not None else 0) + 1  # one above the minimum: never the usual default of 0
    return min(value, high) if high is not None else value


def _value(name: str, annotation: Any, info: FieldInfo) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _value(name, inner, info)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return [_value(name, item, FieldInfo())]
    if origin is dict and typing.get_args(annotation)[1:] not in ((Any,), ()):
        return {MAP_KEY: _value(name, typing.get_args(annotation)[1], FieldInfo())}
    if origin is dict or annotation is dict:
        return {MAP_KEY: "value"}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return fill(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return next(iter(annotation)).value
    if annotation is bool:
        return not bool(info.default) if isinstance(info.default, bool) else True
    if annotation is int:
        return _integer(info)
    if annotation is float:
        return 0.5
    if annotation is str:
        return _string(name, info)
    raise TypeError(f"no sample for {annotation!r}")


def fill(model: type[BaseModel]) -> dict[str, Any]:
    """Every field of ``model`` set (recursively), keyed by wire name; validates against ``model`` itself."""
    out = {}
    for name, info in model.model_fields.items():
        wire = info.alias or name
        out[wire] = _value(wire, info.annotation, info)
    model.model_validate(out)
    return out


def leaf_paths(node: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every scalar in a JSON-shaped value (list items as ``[]``, map values as ``{}``: a map's
    keys are data, not fields)."""
    if isinstance(node, dict):
        return set().union(*(leaf_paths(v, f"{prefix}{{}}" if k == MAP_KEY else f"{prefix}.{k}")
                             for k, v in node.items())) if node else {prefix}
    if isinstance(node, list):
        return set().union(*(leaf_paths(v, f"{prefix}[]") for v in node)) if node else {prefix}
    return {prefix}


def schema_leaf_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of every scalar field an OpenAPI schema declares (list items as ``[]``, map values as ``{}``)."""
    if "properties" in schema:
        return set().union(*(schema_leaf_paths(s, f"{prefix}.{k}") for k, s in schema["properties"].items()))
    if schema.get("type") == "array":
        return schema_leaf_paths(schema["items"], f"{prefix}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        return schema_leaf_paths(schema["additionalProperties"], f"{prefix}{{}}")
    return {prefix}
