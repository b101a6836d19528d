"""A ModelExport's status from its acceptance, its source and its export run (a Job in the cluster, the export
``kubetune run`` runs in-process): both executors derive it here from a :class:`~kubetune.lifecycle.runs.RunState`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.api.common import ArtifactType
from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import ModelExportPhase as P
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle import runs
from kubetune.lifecycle.conditions import Cond, Verdict, apply_conditions
from kubetune.lifecycle.health import with_health
from kubetune.lifecycle.inputs import ACCEPTED, Rejection, input_status
from kubetune.lifecycle.runs import RunState
from kubetune.lifecycle.sources import FINETUNEJOB, Artifact, Unresolved, ref_of

KIND = "ModelExport"
OWNED = ("observedGeneration", "phase", "reason", "message", "conditions", "resolvedSource", "job", "output")
SOURCE_READY = Cond(T.SOURCE_READY, True, R.RESOLVED, "source resolved")


@dataclass(frozen=True)
class ExportObservation:
    """Everything the status depends on, gathered by the executor.

    Attributes:
        generation, now: the object's generation and the current time (RFC 3339).
        job_name: the export Job; empty when the executor runs the export itself (no ``job`` reference).
        rejection, unresolved: why it cannot run (yet).
        resolved_source: status.resolvedSource (what the source resolved to).
        job: the run, None before it was created.
        output: status.output to publish once the export succeeded.
        note: what the executor says about the run, instead of the Job-based default message.
    """

    generation: int
    now: str
    job_name: str
    rejection: Rejection | None = None
    unresolved: Unresolved | None = None
    resolved_source: dict[str, Any] | None = None
    job: RunState | None = None
    output: dict[str, Any] | None = None
    note: str | None = None


def _run_verdict(obs: ExportObservation, prev: dict[str, Any]) -> Verdict:
    job = obs.job
    if job is None or job.state == runs.CREATED:
        msg = obs.note or f"Job {obs.job_name} created, waiting for its pod"
        return Verdict(P.PENDING, R.CREATED, msg, [Cond(T.RUNNING, False, R.CREATED, msg)])
    if job.state == runs.SUCCEEDED:
        return runs.succeeded(obs.note or "export finished")
    if job.state == runs.FAILED:
        return runs.failed(runs.failure_reason(job), job.message or "export Job failed")
    if job.state == runs.SUSPENDED and job.queue:
        return runs.queued(job.queue, f"Job {obs.job_name}")
    if job.state == runs.SUSPENDED:
        msg = obs.note or job.message or "export Job suspended"
        return Verdict(P.PENDING, R.SUSPENDED, msg, [Cond(T.RUNNING, False, R.SUSPENDED, msg)])
    msg = obs.note or f"Job {obs.job_name} is running"
    return Verdict(P.RUNNING, R.RUNNING, msg, [Cond(T.RUNNING, True, R.RUNNING, msg),
                                               *runs.restart_conditions(prev.get("conditions"))])


def derive_modelexport_status(prev: dict[str, Any] | None, obs: ExportObservation) -> dict[str, Any]:
    """The derived part of the next status (the keys in :data:`OWNED`)."""
    prev = prev or {}
    status: dict[str, Any] = {"observedGeneration": obs.generation}
    verdict = input_status(KIND, obs.rejection, obs.unresolved)
    if verdict is None:
        run = _run_verdict(obs, prev)
        verdict = Verdict(run.phase, run.reason, run.message, [ACCEPTED, SOURCE_READY, *run.conditions])
        if obs.job_name:
            status["job"] = {"apiVersion": "batch/v1", "kind": "Job", "name": obs.job_name}
    if obs.resolved_source:
        status["resolvedSource"] = obs.resolved_source
    elif prev.get("resolvedSource"):
        status["resolvedSource"] = prev["resolvedSource"]
    if verdict.phase == P.SUCCEEDED and obs.output:
        status["output"] = obs.output
    conditions = apply_conditions(prev.get("conditions"), with_health(KIND, verdict), obs.now, obs.generation)
    status.update(phase=verdict.phase, reason=verdict.reason, message=verdict.message, conditions=conditions)
    return status


WRONG_ARTIFACT_TYPE = "WrongArtifactType"


@dataclass(frozen=True)
class ExportSource:
    """What an export merges: the model (a base, or a full model to re-export) and the adapter on it, as URIs."""

    model_uri: str
    adapter_uri: str | None = None


def export_source(source: Any, found: Artifact | None) -> ExportSource | Rejection:
    """What to export, from ``spec.source`` and, for a reference, the upstream output it resolved to.

    A referenced LoRA adapter is merged into ``source.model`` when given (for example the bf16 base after QLoRA),
    else into the base its manifest records; a referenced full model is re-exported as it is; ``model``/``adapter``
    URIs are used as given.
    """
    if found is None:
        assert source.model is not None  # the CRD's CEL rule: one source
        return ExportSource(source.model.uri, source.adapter.uri if source.adapter else None)
    if found.artifact_type == ArtifactType.LORA_ADAPTER:
        base = source.model.uri if source.model else found.base_model_uri
        if not base:
            who = f"{found.origin[0]} {found.origin[1]!r}" if found.origin else found.uri
            return Rejection(WRONG_ARTIFACT_TYPE, f"{who} wrote an adapter without a recorded base model; set "
                             "spec.source.model.uri to its base")
        return ExportSource(base, found.uri)
    return ExportSource(found.uri)


def resolved_source(source: Any, chosen: ExportSource) -> dict[str, Any]:
    """status.resolvedSource: what is exported (the adapter, else the model), onto which base, from which object."""
    out: dict[str, Any] = {"uri": chosen.adapter_uri or chosen.model_uri, "baseModelUri": chosen.model_uri}
    ref = ref_of(source)
    if ref:
        out["fineTuneJob" if ref[0] == FINETUNEJOB else "modelExport"] = ref[1]
    return out
