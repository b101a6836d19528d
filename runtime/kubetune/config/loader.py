"""Load a flat (LLaMA-Factory-style) YAML into a RuntimeConfig, apply ``key=value`` overrides, and dump it back.

Every problem is reported at once, each naming the file, the line and the key, so a config is fixed in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubetune.api.errors import FieldError
from kubetune.api.yamlfile import YamlFileError
from kubetune.config.base import CommaSeparated
from kubetune.config.files import OVERRIDES, ConfigError, parse_overrides
from kubetune.config.keys import GROUPS, RENAMED, group_of, known_keys, refused_value, suggest, unsupported_reason
from kubetune.config.runtime import RuntimeConfig


def split_flat(flat: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """Sort flat keys into their groups. Unknown and unsupported keys come back as errors (path = the key)."""
    grouped: dict[str, Any] = {}
    errors: list[FieldError] = []
    unsupported: list[str] = []
    for key, value in flat.items():
        key = str(key)
        if key in RENAMED:
            key, invert = RENAMED[key]
            value = (not value) if invert and isinstance(value, bool) else value
        group = group_of(key)
        if (refusal := refused_value(key, value)) is not None:
            errors.append(FieldError(key, refusal))
        elif group == "":
            grouped[key] = value
        elif group is not None:
            grouped.setdefault(group, {})[key] = value
        elif (why := unsupported_reason(key)) is not None:
            unsupported.append(key)
            errors.append(FieldError(key, f"{key} is not supported by kubetune ({why})"))
        else:
            hint = suggest(key)
            errors.append(FieldError(key, f"unknown key {key}" + (f" (did you mean {hint}?)" if hint else "")))
    if len(unsupported) > 1:
        errors.append(FieldError("", f"keys not supported by kubetune: {', '.join(unsupported)}"))
    return grouped, errors


def _flat_path(loc: tuple[int | str, ...], message: str) -> str:
    """Turn a pydantic location (group, key, ...) back into the flat key path the user wrote."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in GROUPS:
        parts = parts[1:]
    if parts:
        return ".".join(parts)
    # A cross-field rule: attribute it to the first key its message names.
    known = set(known_keys())
    return next((word for word in message.replace(",", " ").split() if word in known), "")


def _errors_of(exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err.get("input") is not None and not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})"
        out.append(FieldError(_flat_path(err["loc"], message), message))
    return out


def config_from_flat(flat: Mapping[str, Any], file: str = "<config>",
                     lines: Mapping[str, int] | None = None) -> RuntimeConfig:
    """Validate a flat key dict into a RuntimeConfig. Raises ConfigError listing every problem."""
    grouped, errors = split_flat(flat)
    config = None
    try:
        config = RuntimeConfig.model_validate(grouped)
    except ValidationError as exc:
        errors.extend(_errors_of(exc))
    if errors or config is None:
        lines = lines or {}
        raise ConfigError([FieldError(e.path, e.message, file, lines.get(e.path.split(".")[0])) for e in errors])
    return config


def read_flat(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a flat YAML (or JSON) config; returns the dict and the line of each top-level key."""
    from kubetune.api.documents import EMPTY_FILE, load_documents

    try:
        docs = list(load_documents(path))
    except YamlFileError as exc:
        raise ConfigError([FieldError("", exc.message, exc.file, exc.line)]) from None
    if not docs:
        raise ConfigError([FieldError("", EMPTY_FILE, str(path))])
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        where = docs[1].line_of("") if len(docs) > 1 else docs[0].line_of("")
        raise ConfigError([FieldError("", "expected one mapping of runtime keys (key: value lines)", str(path),
                                      where)])
    doc = docs[0]
    lines = {str(k[0]): n for k, n in doc.lines.items() if len(k) == 1}
    return dict(doc.data), lines


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> RuntimeConfig:
    """Load a runtime config file (flat LLaMA-Factory-style keys) with ``key=value`` overrides applied on top.

    Raises:
        ConfigError: every unknown, unsupported or invalid key, each with file, line and key.
    """
    flat, lines = read_flat(path)
    extra = parse_overrides(overrides)
    for key in extra:
        lines.pop(key, None)
    merged = {**flat, **extra}
    try:
        return config_from_flat(merged, str(path), lines)
    except ConfigError as exc:
        errors = [e if e.path.split(".")[0] not in extra else FieldError(e.path, e.message, OVERRIDES)
                  for e in exc.errors]
        raise ConfigError(errors) from None


def _comma_keys() -> frozenset[str]:
    return frozenset(key for cls in GROUPS.values() for key, info in cls.model_fields.items()
                     if any(isinstance(m, CommaSeparated) for m in info.metadata))


def dump_config(cfg: RuntimeConfig, *, exclude_defaults: bool = False, exclude_none: bool = True,
                comma_lists: bool = True) -> dict[str, Any]:
    """The flat LLaMA-Factory-style dict of a config; ``load_config`` of it gives back an equal config.

    Lists that LLaMA-Factory writes as comma-separated strings (dataset, lora_target, ...) are written that way
    unless ``comma_lists`` is false.
    """
    comma = _comma_keys() if comma_lists else frozenset()
    out: dict[str, Any] = {"stage": cfg.stage}
    for group in GROUPS:
        values = getattr(cfg, group).model_dump(mode="json", exclude_defaults=exclude_defaults,
                                                exclude_none=exclude_none)
        for key, value in values.items():
            if key in comma and isinstance(value, list) and all(isinstance(v, str | float | int) for v in value):
                value = ",".join(str(v) for v in value)
            out[key] = value
    return out
