"""Read one YAML config file (or ``key=value`` overrides) for a runtime command, errors with file:line.

A runtime command (`kubetune train`, `export`, `serve`, `chat`) takes either a kubetune custom resource (it has
``kind``) or a flat runtime config with LLaMA-Factory key names, plus ``key=value`` overrides. This module only
reads and reports; which model the document becomes is decided by the command. It holds the one
:class:`ConfigError` and the one override parser every command uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kubetune.api.documents import EMPTY_FILE, Document, load_documents
from kubetune.api.errors import FieldError, field_errors
from kubetune.api.yamlfile import YamlFileError, load_value

M = TypeVar("M", bound=BaseModel)
OVERRIDES = "<command line>"  # the "file" of errors about key=value overrides


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
    except YamlFileError as exc:
        raise ConfigError([FieldError("", exc.message, file=exc.file, line=exc.line)]) from None
    if not docs:
        raise ConfigError([FieldError("", EMPTY_FILE, file=where)])
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        line = docs[1].line_of("") if len(docs) > 1 else docs[0].line_of("")
        raise ConfigError([FieldError("", "expected exactly one YAML mapping in the file", file=where, line=line)])
    return docs[0]


# YAML 1.1 reads these as booleans; LLaMA-Factory's command line (OmegaConf, YAML 1.2 booleans) keeps them strings,
# so `eval_strategy=no` means the string "no". Boolean fields still accept them (pydantic reads "no" as False).
YAML11_ONLY_BOOLEANS = frozenset({"y", "yes", "n", "no", "on", "off"})


def override_value(text: str) -> Any:
    """The value of one ``key=value`` override: YAML, except that an empty value is None and the YAML 1.1-only
    booleans (``no``, ``off``, ``yes``, ...) stay the strings they were written as.

    Raises YamlFileError when the text is not YAML.
    """
    if not text.strip():
        return None
    if text.strip().lower() in YAML11_ONLY_BOOLEANS:
        return text.strip()
    return load_value(text)


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["lora_rank=16", "template=qwen", "eval_strategy=no"]`` -> ``{"lora_rank": 16, "template": "qwen",
    "eval_strategy": "no"}`` (values as :func:`override_value` reads them).

    Raises ConfigError naming every override that is not ``key=value`` or whose value is not YAML.
    """
    out: dict[str, Any] = {}
    errors = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            errors.append(FieldError("", f"override {pair!r} is not key=value", file=OVERRIDES))
            continue
        try:
            out[key.strip()] = override_value(value)
        except YamlFileError as exc:
            errors.append(FieldError(key.strip(), f"value is not valid YAML: {exc.message}", file=OVERRIDES))
    if errors:
        raise ConfigError(errors)
    return out


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
