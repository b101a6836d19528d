"""The work directory of local runs: one JSON record per object, like the object `kubectl get -o json` shows.

``<work-dir>/objects/<namespace>/<Kind>/<name>.json`` holds the resource (apiVersion, kind, metadata with a
local ``uid``, spec) and its ``status`` in the CRD's shape (phase, reason, message, conditions, progress, output).
The uid is created on the first run and kept while the spec stays the same, so the output directory
``<output.uri>/<name>-<uid8>/`` stays the same and a rerun resumes. A changed spec is a new object (in the cluster
specs are immutable: you would delete and re-create it), so it gets a new uid and a fresh output directory.
Later runs read these records to resolve ``fineTuneJobRef``/``modelExportRef`` to objects run before.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.artifacts import atomic_write_text
from kubetune.local.plan import Key, LocalObject
from kubetune.names import label_problem, subdomain_problem

DEFAULT_WORK_DIR = ".kubetune"


def spec_hash(obj: LocalObject) -> str:
    """A digest of the spec as the apiserver would store it (field order and defaults do not matter)."""
    wire = obj.resource.spec.wire()
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Record:
    """One object's local state; ``status`` is the wire (camelCase) status."""

    key: Key
    uid: str
    spec_hash: str
    file: str
    spec: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    generation: int = 1

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")

    def to_json(self) -> dict[str, Any]:
        namespace, kind, name = self.key
        return {
            "apiVersion": "kubetune.io/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "uid": self.uid, "generation": self.generation,
                         "annotations": {"kubetune.io/local-spec-hash": self.spec_hash,
                                         "kubetune.io/local-file": self.file}},
            "spec": self.spec, "status": self.status,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        meta = data["metadata"]
        notes = meta.get("annotations") or {}
        return cls(key=(meta["namespace"], data["kind"], meta["name"]), uid=meta["uid"],
                   spec_hash=notes.get("kubetune.io/local-spec-hash", ""), file=notes.get("kubetune.io/local-file", ""),
                   spec=data.get("spec") or {}, status=data.get("status") or {},
                   generation=int(meta.get("generation") or 1))


@dataclass(frozen=True)
class WorkDir:
    """Reads and writes records under ``root``."""

    root: Path

    def path(self, key: Key) -> Path:
        """Where ``key``'s record lives. Raises ValueError for a name or namespace that is not a Kubernetes name
        (plan.load_objects reports those first; this keeps any other caller inside the work directory)."""
        namespace, kind, name = key
        problem = label_problem(namespace) or subdomain_problem(name) or (None if kind.isalpha() else kind)
        if problem is not None:
            raise ValueError(f"no record path for {kind}/{name} in namespace {namespace}: {problem}")
        return self.root / "objects" / namespace / kind / f"{name}.json"

    def load(self, key: Key) -> Record | None:
        """The record of ``key``, or None when it never ran here (or the record is unreadable)."""
        path = self.path(key)
        try:
            return Record.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError):
            return None

    def save(self, record: Record) -> None:
        atomic_write_text(self.path(record.key), json.dumps(record.to_json(), indent=2) + "\n")

    def admit(self, obj: LocalObject) -> tuple[Record, bool]:
        """The record to run ``obj`` with, and whether it is new.

        The earlier record is kept (same uid, same status) when the spec is unchanged; otherwise a new record with a
        new uid replaces it.
        """
        digest = spec_hash(obj)
        old = self.load(obj.key)
        if old is not None and old.spec_hash == digest:
            return old, False
        uid = str(uuid.uuid4())
        return Record(key=obj.key, uid=uid, spec_hash=digest, file=str(obj.file.resolve()),
                      spec=obj.resource.spec.wire()), True

    def records(self) -> list[Record]:
        """Every record in the work directory (for listing)."""
        found = []
        for path in sorted((self.root / "objects").glob("*/*/*.json")):
            try:
                found.append(Record.from_json(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError):
                continue
        return found
