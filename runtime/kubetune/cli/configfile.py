"""Read one YAML config file for a runtime command and validate it into a typed model, errors with file:line.

A runtime command (`kubetune export`, `serve`, `chat`) takes either a kubetune custom resource (it has ``kind``)
or a flat runtime config with LLaMA-Factory key names. This module only reads and reports; which model the
document becomes is decided by the command.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kubetune.api.documents import Document, load_documents
from kubetune.api.errors import FieldError, field_errors

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that cannot be used; ``str()`` lists every problem with file, line and key."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def read_document(path: str | Path) -> Document:
    """The single YAML document in ``path``. Raises ConfigError when the file is missing, empty or not one mapping."""
    where = str(path)
    try:
        docs = list(load_documents(path))
    except FileNotFoundError as exc:
        raise ConfigError([FieldError("", "file not found", file=where)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([FieldError("", f"not valid YAML: {exc}", file=where)]) from exc
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise ConfigError([FieldError("", "expected exactly one YAML mapping in the file", file=where)])
    return docs[0]


def is_custom_resource(doc: Document) -> bool:
    return "kind" in doc.data or "apiVersion" in doc.data


def validate(model: type[M], data: dict[str, Any], doc: Document) -> M:
    """``model.model_validate(data)`` with errors located in ``doc`` (unknown keys get a did-you-mean)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [replace(e, file=doc.file, line=doc.line_of(e.path)) for e in field_errors(exc, model)]
        raise ConfigError(errors) from exc


def fail(doc: Document, path: str, message: str) -> ConfigError:
    """A ConfigError about one key of ``doc``."""
    return ConfigError([FieldError(path, message, file=doc.file, line=doc.line_of(path))])
