"""Resolve a model source (a uri or a reference to another kubetune object) for a local run.

References are looked up in the work directory: objects run earlier in the same command have their record there
already, as do objects from earlier runs. Like the operator, a reference is usable only once the referenced
object succeeded and recorded an output; a failed upstream fails its consumers (``SourceFailed``), one that never
ran here is ``SourceNotFound``, one that has not finished is ``WaitingForSource``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.conditions import ConditionType, Reason
from kubetune.local.status import is_true
from kubetune.local.workdir import WorkDir
from kubetune.uris import UriResolver


@dataclass(frozen=True)
class Artifact:
    """A usable input: where it is, what its manifest says, and the folder its relative URIs are relative to."""

    uri: str
    artifact_type: str | None = None
    base_model_uri: str | None = None
    base_model_revision: str | None = None
    origin: tuple[str, str] | None = None
    base_dir: Path | None = None

    @property
    def origin_name(self) -> str | None:
        return self.origin[1] if self.origin else None

    def base_model_path(self, resolver: UriResolver) -> str | None:
        """The recorded base model as a local path, resolved where the producer resolved it."""
        if not self.base_model_uri:
            return None
        producer = UriResolver(pvc_root=resolver.pvc_root, base_dir=self.base_dir or resolver.base_dir)
        return producer.resolve(self.base_model_uri)


@dataclass(frozen=True)
class Unresolved:
    """An input that cannot be used: ``reason`` is WaitingForSource, SourceFailed or SourceNotFound (or, for a
    ModelExport's score gate, WaitingForScore or ScoreBelowMinimum)."""

    reason: Reason
    message: str

    @property
    def final(self) -> bool:
        return self.reason not in (Reason.WAITING_FOR_SOURCE, Reason.WAITING_FOR_SCORE)


Resolution = Artifact | Unresolved


def reference_of(source: Any) -> tuple[str, str] | None:
    """(kind, name) of a typed source's reference, or None for a uri source."""
    if getattr(source, "fine_tune_job_ref", None) is not None:
        return "FineTuneJob", source.fine_tune_job_ref.name
    if getattr(source, "model_export_ref", None) is not None:
        return "ModelExport", source.model_export_ref.name
    return None


def resolve_reference(kind: str, name: str, namespace: str, work: WorkDir) -> Resolution:
    """The output of the referenced object, from its record in ``work``."""
    record = work.load((namespace, kind, name))
    if record is None:
        return Unresolved(Reason.SOURCE_NOT_FOUND,
                          f"{kind} {name!r} is not in the given files and has not run in {work.root}; "
                          "add its file to the command")
    status = record.status
    if is_true(status, ConditionType.FAILED):
        return Unresolved(Reason.SOURCE_FAILED, f"{kind} {name!r} failed: {status.get('message') or 'see its log'}")
    output = status.get("output") or {}
    if not (is_true(status, ConditionType.SUCCEEDED) and output.get("uri")):
        return Unresolved(Reason.WAITING_FOR_SOURCE,
                          f"waiting for {kind} {name!r} to succeed (now {status.get('phase') or 'Pending'})")
    base = output.get("baseModel") or {}
    return Artifact(uri=output["uri"], artifact_type=output.get("artifactType"), base_model_uri=base.get("uri"),
                    base_model_revision=base.get("revision"), origin=(kind, name),
                    base_dir=Path(record.file).parent if record.file else None)


def resolve_source(source: Any, namespace: str, work: WorkDir) -> Resolution:
    """A uri source as-is, or the output of the object it references."""
    ref = reference_of(source)
    if ref is None:
        return Artifact(uri=source.uri, base_model_revision=getattr(source, "revision", None))
    return resolve_reference(*ref, namespace, work)


def absolute_uri(uri: str, resolver: UriResolver) -> str:
    """``uri`` as consumers elsewhere can read it: pvc://, hf://, s3:// unchanged, local paths as file:///abs."""
    if uri.startswith(("pvc://", "hf://", "s3://")):
        return uri
    trailing = "/" if uri.endswith("/") else ""
    return "file://" + resolver.resolve(uri).rstrip("/") + trailing
