"""Registers the runtime-config validator with ``kubetune validate`` (kubetune.api.documents.EXTRA_VALIDATORS).

A document without apiVersion/kind is taken for a runtime config when one of its keys is a runtime key; errors
carry the flat key as path so the validator's line map finds the line. Nothing is opened: a model path or
dataset_dir that does not exist on this machine is not an error here.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.documents import EXTRA_VALIDATORS
from kubetune.api.errors import FieldError
from kubetune.config.keys import group_of, unsupported_reason
from kubetune.config.loader import ConfigError, config_from_flat


def validate_runtime_config(data: dict[str, Any]) -> list[FieldError] | None:
    """Problems of a flat runtime config, or None when the document does not look like one."""
    if not any(group_of(str(k)) is not None or unsupported_reason(str(k)) for k in data):
        return None
    try:
        config_from_flat(data)
    except ConfigError as exc:
        return [FieldError(e.path, e.message) for e in exc.errors]
    return []


if validate_runtime_config not in EXTRA_VALIDATORS:
    EXTRA_VALIDATORS.append(validate_runtime_config)
