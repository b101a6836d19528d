"""Load kubetune documents (CRs or runtime configs) from YAML and validate them with file and line numbers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kubetune.api.errors import FieldError, field_errors
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport
from kubetune.api.yamlfile import YamlFileError, compose_all, read_text

API_VERSION = "kubetune.io/v1alpha1"
EMPTY_FILE = "the file holds no YAML document (it is empty or only comments); expected a kubetune resource or config"
KINDS: dict[str, type[BaseModel]] = {
    "FineTuneJob": FineTuneJob,
    "ModelExport": ModelExport,
    "InferenceService": InferenceService,
}

# Validators for documents that are not custom resources (runtime configs), tried in order. Each returns None
# when the document is not its kind, else the list of problems. The runtime registers its config validator here.
DocumentValidator = Callable[[dict[str, Any]], list[FieldError] | None]
EXTRA_VALIDATORS: list[DocumentValidator] = []


@dataclass
class Document:
    """One YAML document with a map from field path to line number."""

    file: str
    index: int
    data: Any
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        key = _path_key(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


def _path_key(path: str) -> tuple[Any, ...]:
    out: list[Any] = []
    for part in path.replace("]", "").replace("[", ".").split("."):
        if part:
            out.append(int(part) if part.isdigit() else part)
    return tuple(out)


def _line_map(node: yaml.Node, prefix: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            out[path] = key.start_mark.line + 1
            _line_map(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*prefix, i), out)


def load_documents(path: str | Path) -> Iterator[Document]:
    """Yield each YAML document in a file with its line map; empty documents are skipped.

    Raises:
        YamlFileError: unreadable file, not UTF-8, bad YAML, too deep or too large an expansion, duplicate keys;
            each with the line and column (see kubetune.api.yamlfile).
    """
    for i, (node, data) in enumerate(compose_all(read_text(path), str(path))):
        if node is None or data is None:  # nothing, or only `---` (kubectl skips those too)
            continue
        lines: dict[tuple[Any, ...], int] = {}
        _line_map(node, (), lines)
        yield Document(file=str(path), index=i, data=data, lines=lines)


def parse_custom_resource(data: dict[str, Any]) -> BaseModel:
    """Parse a kubetune CR dict into its type. Raises ValidationError or ValueError."""
    kind = data.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not a kubetune kind (expected one of {', '.join(KINDS)})")
    return KINDS[kind].model_validate(data, by_name=False)


def validate_document(doc: Document) -> list[FieldError]:
    """All problems in one document, each with file, line and field path."""
    data = doc.data
    if not isinstance(data, dict):
        errors = [FieldError("", "expected a mapping (a kubetune resource or runtime config)")]
    elif "kind" in data or "apiVersion" in data:
        errors = _validate_cr(data)
    else:
        errors = _validate_other(data)
    return [replace(e, file=doc.file, line=doc.line_of(e.path)) for e in errors]


def _validate_cr(data: dict[str, Any]) -> list[FieldError]:
    errors = []
    if data.get("apiVersion") != API_VERSION:
        errors.append(FieldError("apiVersion", f"expected {API_VERSION!r}, got {data.get('apiVersion')!r}"))
    kind = data.get("kind")
    if kind not in KINDS:
        return [*errors, FieldError("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")]
    try:
        KINDS[kind].model_validate(data, by_name=False)
    except ValidationError as exc:
        errors.extend(field_errors(exc, KINDS[kind]))
    return errors


def _validate_other(data: dict[str, Any]) -> list[FieldError]:
    for validator in EXTRA_VALIDATORS:
        result = validator(data)
        if result is not None:
            return result
    return [FieldError("", "not a kubetune resource (no apiVersion/kind) and not a runtime config")]


def validate_file(path: str | Path) -> list[FieldError]:
    """Validate every document of a file. A file that is not usable YAML, or holds no document, is one problem."""
    try:
        docs = list(load_documents(path))
    except YamlFileError as exc:
        return [FieldError("", exc.message, exc.file, exc.line)]
    if not docs:
        return [FieldError("", EMPTY_FILE, str(path))]
    return [err for doc in docs for err in validate_document(doc)]
