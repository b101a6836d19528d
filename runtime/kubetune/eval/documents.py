"""Registers the `kubetune eval` config validator with ``kubetune validate`` (kubetune.api.documents.EXTRA_VALIDATORS).

A document without apiVersion/kind is an evaluation config when it names what to score (``task_type``, a ``task``
with its ``task_dir``, or harness ``tasks``); it is checked before the runtime-config validator, which would refuse
those keys as LLaMA-Factory evaluation keys of a training config.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kubetune.api.documents import EXTRA_VALIDATORS
from kubetune.api.errors import FieldError, field_errors
from kubetune.eval.config import EvalConfig


def validate_eval_config(data: dict[str, Any]) -> list[FieldError] | None:
    """Problems of an evaluation config, or None when the document does not look like one."""
    if not ("task_type" in data or {"task", "task_dir"} <= data.keys() or "tasks" in data):
        return None
    try:
        EvalConfig.model_validate(data)
    except ValidationError as exc:
        return field_errors(exc)
    return []


if validate_eval_config not in EXTRA_VALIDATORS:
    EXTRA_VALIDATORS.insert(0, validate_eval_config)
