"""Resolve references between kubetune objects into concrete artifacts (pure).

A consumer (a ModelExport, an InferenceService, or a FineTuneJob that starts from another run's output) names its
inputs by URI or by reference. A reference is usable only when the referenced object has ``Succeeded=True`` and a
``status.output``; until then the consumer waits, and it fails with ``SourceFailed`` when the upstream failed.
The referenced objects are fetched by the caller and passed in, so everything here is a plain function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.api.conditions import ConditionType, Reason

FINETUNEJOB = "FineTuneJob"
MODELEXPORT = "ModelExport"

Ref = tuple[str, str]  # (kind, name) in the consumer's namespace


@dataclass(frozen=True)
class Artifact:
    """A usable input: its URI and, for kubetune outputs, what the manifest says it is."""

    uri: str
    artifact_type: str | None = None
    base_model_uri: str | None = None
    base_model_revision: str | None = None
    origin: Ref | None = None

    @property
    def origin_text(self) -> str | None:
        return f"{self.origin[0]}/{self.origin[1]}" if self.origin else None


@dataclass(frozen=True)
class Unresolved:
    """An input that cannot be used (yet): ``reason`` is WaitingForSource, SourceFailed or SourceNotFound."""

    reason: str
    message: str
    ref: Ref

    @property
    def final(self) -> bool:
        """A failed upstream never recovers (its spec is immutable), nor does a score below the minimum; waiting
        and not-found may."""
        return self.reason in (Reason.SOURCE_FAILED, Reason.SCORE_BELOW_MINIMUM)


Resolution = Artifact | Unresolved


def ref_of(source: Any) -> Ref | None:
    """The (kind, name) a typed source refers to, or None for a URI source."""
    if getattr(source, "fine_tune_job_ref", None) is not None:
        return (FINETUNEJOB, source.fine_tune_job_ref.name)
    if getattr(source, "model_export_ref", None) is not None:
        return (MODELEXPORT, source.model_export_ref.name)
    return None


def _condition(body: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


def resolve_ref(ref: Ref, body: dict[str, Any] | None) -> Resolution:
    """Resolve one reference against the referenced object's body (None when it does not exist)."""
    kind, name = ref
    if body is None:
        return Unresolved(Reason.SOURCE_NOT_FOUND, f"{kind} {name!r} does not exist (yet) in this namespace", ref)
    failed = _condition(body, ConditionType.FAILED)
    if failed and failed.get("status") == "True":
        detail = failed.get("message") or failed.get("reason") or "failed"
        return Unresolved(Reason.SOURCE_FAILED, f"{kind} {name!r} failed: {detail}", ref)
    succeeded = _condition(body, ConditionType.SUCCEEDED)
    output = (body.get("status") or {}).get("output") or {}
    if not (succeeded and succeeded.get("status") == "True" and output.get("uri")):
        phase = (body.get("status") or {}).get("phase") or "Pending"
        return Unresolved(Reason.WAITING_FOR_SOURCE, f"waiting for {kind} {name!r} to succeed (now {phase})", ref)
    base = output.get("baseModel") or {}
    return Artifact(
        uri=output["uri"],
        artifact_type=output.get("artifactType"),
        base_model_uri=base.get("uri"),
        base_model_revision=base.get("revision"),
        origin=ref,
    )


def resolve_source(source: Any, fetched: dict[Ref, dict[str, Any] | None]) -> Resolution:
    """Resolve a typed source (uri or reference). ``fetched`` maps each reference to the object found."""
    ref = ref_of(source)
    if ref is None:
        return Artifact(uri=source.uri, base_model_uri=None, base_model_revision=getattr(source, "revision", None))
    return resolve_ref(ref, fetched.get(ref))


def same_uri(a: str | None, b: str | None) -> bool:
    """URIs equal up to a trailing slash."""
    return a is not None and b is not None and a.rstrip("/") == b.rstrip("/")


def first_unresolved(resolutions: list[Resolution]) -> Unresolved | None:
    """The input that blocks progress: a failed one first, else the first waiting one."""
    pending = [r for r in resolutions if isinstance(r, Unresolved)]
    failed = [r for r in pending if r.final]
    return (failed or pending)[0] if pending else None
