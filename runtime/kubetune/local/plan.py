"""Which objects a local run executes, and in which order.

The files are read and validated exactly as `kubetune validate` does (same messages, with file, line and field
path). The objects are then ordered so that every object runs after the objects it references that are part of the
same run: FineTuneJob, then ModelExport, then InferenceService, with references deciding ties and cycles rejected.
References to objects that are not in the files are looked up later in the work directory (earlier local runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.documents import load_documents, parse_custom_resource, validate_file
from kubetune.api.errors import FieldError
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport
from kubetune.lifecycle.sources import references
from kubetune.names import label_problem, subdomain_problem

Resource = FineTuneJob | ModelExport | InferenceService
Key = tuple[str, str, str]  # (namespace, kind, name)
KIND_ORDER = {"FineTuneJob": 0, "ModelExport": 1, "InferenceService": 2}
DEFAULT_NAMESPACE = "default"


class PlanError(ValueError):
    """Files that cannot run; ``errors`` lists every problem with file and line."""

    def __init__(self, errors: Sequence[FieldError]):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class LocalObject:
    """One custom resource from a file, with where it came from (relative paths resolve against its folder)."""

    resource: Resource
    file: Path
    line: int | None = None

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return str(self.resource.metadata.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.resource.metadata.get("namespace") or DEFAULT_NAMESPACE)

    @property
    def key(self) -> Key:
        return (self.namespace, self.kind, self.name)

    @property
    def ref(self) -> str:
        """``Kind/name``, as people and kubectl write it."""
        return f"{self.kind}/{self.name}"

    @property
    def base_dir(self) -> Path:
        return self.file.resolve().parent


def name_problems(obj: LocalObject) -> list[tuple[str, str]]:
    """(field path, message) for each name that is not what the apiserver accepts; names become local paths."""
    meta = obj.resource.metadata
    found = []
    if (problem := subdomain_problem(str(meta.get("name")))) is not None:
        found.append(("metadata.name", f"{problem}; names become folders, so they are checked as the apiserver does"))
    if meta.get("namespace") is not None and (problem := label_problem(str(meta["namespace"]))) is not None:
        found.append(("metadata.namespace", problem))
    return found  # references are checked by the schema (a DNS-1123 label pattern)


def load_objects(files: Iterable[str | Path]) -> list[LocalObject]:
    """Validate and parse every document of ``files``. Raises PlanError listing all problems of all files."""
    errors: list[FieldError] = []
    objects: list[LocalObject] = []
    for file in files:
        problems = validate_file(file)
        if problems:
            errors.extend(problems)
            continue
        for doc in load_documents(file):
            data = doc.data
            if not isinstance(data, dict) or data.get("kind") not in KIND_ORDER:
                errors.append(FieldError("kind", "kubetune run takes FineTuneJob, ModelExport and InferenceService "
                                         "resources; run a runtime config with `kubetune train`", str(file),
                                         doc.line_of("kind")))
                continue
            if not data.get("metadata", {}).get("name"):
                errors.append(FieldError("metadata.name", "required field is missing", str(file),
                                         doc.line_of("metadata")))
                continue
            resource: Any = parse_custom_resource(data)
            obj = LocalObject(resource, Path(file), doc.line_of(""))
            bad_names = name_problems(obj)
            errors.extend(FieldError(path, message, str(file), doc.line_of(path)) for path, message in bad_names)
            if not bad_names:
                objects.append(obj)
    if errors:
        raise PlanError(errors)
    return objects


def order_objects(objects: Sequence[LocalObject]) -> list[LocalObject]:
    """``objects`` with every object after the objects it references (kind order, then file order, breaks ties).

    Raises PlanError for two objects with the same kind and name, and for reference cycles.
    """
    by_key: dict[Key, LocalObject] = {}
    for obj in objects:
        if obj.key in by_key:
            first = by_key[obj.key]
            raise PlanError([FieldError("metadata.name", f"{obj.ref} is defined twice (first in {first.file})",
                                        str(obj.file), obj.line)])
        by_key[obj.key] = obj
    position = {obj.key: i for i, obj in enumerate(objects)}
    ordered: list[LocalObject] = []
    state: dict[Key, str] = {}

    def visit(obj: LocalObject, chain: tuple[str, ...]) -> None:
        if state.get(obj.key) == "done":
            return
        if state.get(obj.key) == "visiting":
            cycle = " -> ".join((*chain, obj.ref))
            raise PlanError([FieldError("spec", f"reference cycle: {cycle}", str(obj.file), obj.line)])
        state[obj.key] = "visiting"
        for kind, name in references(obj.resource):
            upstream = by_key.get((obj.namespace, kind, name))
            if upstream is not None:
                visit(upstream, (*chain, obj.ref))
        state[obj.key] = "done"
        ordered.append(obj)

    for obj in sorted(objects, key=lambda o: (KIND_ORDER[o.kind], position[o.key])):
        visit(obj, ())
    return ordered
