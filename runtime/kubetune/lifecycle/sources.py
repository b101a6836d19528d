"""Source resolution verdicts: is a referenced kubetune object's output usable, still to come, or never coming?

A consumer (a ModelExport, an InferenceService, or a FineTuneJob that starts from another run's output) names its
inputs by URI or by reference. A reference is usable only when the referenced object has ``Succeeded=True`` and a
``status.output``; until then the consumer waits, and it fails with ``SourceFailed`` when the upstream failed.

The operator reads the referenced object from the apiserver, ``kubetune run`` from its work directory; both pass
its ``status`` here and get the same verdict. One difference is the executor's to state: in the cluster a missing
object may be created later (the consumer waits), while a local run knows every object it will run, so there a
missing one is final (``absent_is_final``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.conditions import ConditionType, Reason
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport
from kubetune.uris import UriResolver

FINETUNEJOB = "FineTuneJob"
MODELEXPORT = "ModelExport"

Ref = tuple[str, str]  # (kind, name) in the consumer's namespace

# an upstream that failed never recovers (its spec is immutable), nor does a score below the minimum
FINAL_REASONS = frozenset({Reason.SOURCE_FAILED, Reason.SCORE_BELOW_MINIMUM})


@dataclass(frozen=True)
class Artifact:
    """A usable input: its URI and, for kubetune outputs, what the manifest says it is.

    ``base_dir`` is the folder the producer's relative URIs are relative to (local runs only; None in the cluster,
    where every URI is absolute).
    """

    uri: str
    artifact_type: str | None = None
    base_model_uri: str | None = None
    base_model_revision: str | None = None
    origin: Ref | None = None
    base_dir: Path | None = None

    @property
    def origin_text(self) -> str | None:
        return f"{self.origin[0]}/{self.origin[1]}" if self.origin else None

    @property
    def origin_name(self) -> str | None:
        return self.origin[1] if self.origin else None

    def base_model_path(self, resolver: UriResolver) -> str | None:
        """The recorded base model as a local path, resolved where the producer resolved it."""
        if not self.base_model_uri:
            return None
        producer = UriResolver(pvc_root=resolver.pvc_root, base_dir=self.base_dir or resolver.base_dir,
                               s3_root=resolver.s3_root)
        return producer.resolve(self.base_model_uri)


@dataclass(frozen=True)
class Unresolved:
    """An input that cannot be used (yet): ``reason`` is WaitingForSource, SourceFailed or SourceNotFound (or, for a
    ModelExport's score gate, WaitingForScore or ScoreBelowMinimum)."""

    reason: str
    message: str
    ref: Ref | None = None
    absent_is_final: bool = False

    @property
    def final(self) -> bool:
        """Whether waiting cannot help: the upstream failed, or (locally) it does not exist."""
        return self.reason in FINAL_REASONS or (self.absent_is_final and self.reason == Reason.SOURCE_NOT_FOUND)


Resolution = Artifact | Unresolved


def ref_of(source: Any) -> Ref | None:
    """The (kind, name) a typed source refers to, or None for a URI source."""
    if getattr(source, "fine_tune_job_ref", None) is not None:
        return (FINETUNEJOB, source.fine_tune_job_ref.name)
    if getattr(source, "model_export_ref", None) is not None:
        return (MODELEXPORT, source.model_export_ref.name)
    return None


def model_sources(job: FineTuneJob) -> list[Any]:
    """Every model-like input of a FineTuneJob: the base, the DPO reference model, the PPO reward model (a reward
    served at a URL is no model input)."""
    spec = job.spec
    sources: list[Any] = [spec.model]
    if spec.preference and spec.preference.ref_model:
        sources.append(spec.preference.ref_model)
    if spec.ppo and spec.ppo.reward_model and not spec.ppo.reward_model.url:
        sources.append(spec.ppo.reward_model)
    return sources


def input_sources(resource: FineTuneJob | ModelExport | InferenceService) -> list[Any]:
    """The typed sources (uri or reference) an object reads, in spec order."""
    if isinstance(resource, FineTuneJob):
        return model_sources(resource)
    if isinstance(resource, ModelExport):
        return [resource.spec.source]
    return [resource.spec.model, *(resource.spec.adapters or [])]


def references(resource: FineTuneJob | ModelExport | InferenceService) -> list[Ref]:
    """(kind, name) of every kubetune object ``resource`` reads from, in spec order: what both executors wait for."""
    return [ref for ref in map(ref_of, input_sources(resource)) if ref is not None]


def uri_source(source: Any) -> Artifact:
    """A URI source as it is (its revision, if the kind has one)."""
    return Artifact(uri=source.uri, base_model_revision=getattr(source, "revision", None))


def _condition(status: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)


def source_verdict(ref: Ref, status: Mapping[str, Any] | None, *, absent: str,
                   absent_is_final: bool = False, base_dir: Path | None = None) -> Resolution:
    """Resolve one reference from the referenced object's ``status`` (None when the object does not exist).

    Args:
        ref: the referenced (kind, name).
        status: its status, as the executor read it.
        absent: the message when it does not exist (each executor says where it looked).
        absent_is_final: whether a missing object can never appear (a local run).
        base_dir: where the producer's relative URIs are anchored (local runs).
    """
    kind, name = ref
    if status is None:
        return Unresolved(Reason.SOURCE_NOT_FOUND, absent, ref, absent_is_final)
    failed = _condition(status, ConditionType.FAILED)
    if failed and failed.get("status") == "True":
        detail = failed.get("message") or status.get("message") or failed.get("reason") or "see its log"
        return Unresolved(Reason.SOURCE_FAILED, f"{kind} {name!r} failed: {detail}", ref, absent_is_final)
    succeeded = _condition(status, ConditionType.SUCCEEDED)
    output = status.get("output") or {}
    if not (succeeded and succeeded.get("status") == "True" and output.get("uri")):
        return Unresolved(Reason.WAITING_FOR_SOURCE,
                          f"waiting for {kind} {name!r} to succeed (now {status.get('phase') or 'Pending'})", ref,
                          absent_is_final)
    base = output.get("baseModel") or {}
    return Artifact(uri=output["uri"], artifact_type=output.get("artifactType"), base_model_uri=base.get("uri"),
                    base_model_revision=base.get("revision"), origin=ref, base_dir=base_dir)


def first_unresolved(resolutions: list[Resolution]) -> Unresolved | None:
    """The input that blocks progress: a failed one first, else the first waiting one."""
    pending = [r for r in resolutions if isinstance(r, Unresolved)]
    failed = [r for r in pending if r.final]
    return (failed or pending)[0] if pending else None
