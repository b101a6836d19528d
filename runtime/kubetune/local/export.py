"""Run a ModelExport on this machine: resolve its source, build the document the export pod runs, export it.

What is exported is the lifecycle's choice (:func:`kubetune.lifecycle.modelexport.export_source`, as in the
cluster): a ``fineTuneJobRef`` source is the job's adapter merged into the base recorded in its manifest (or into
``source.model`` when given); a ``modelExportRef`` source re-exports that model; ``adapter``/``model`` URIs are used
as they are. The document is the pod's (:func:`kubetune.config.mapping.export.export_pod_document`); the export
writes ``<output.uri>/<name>-<uid8>/`` with its manifest last.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from typing import Any

from kubetune.api.conditions import Reason as R
from kubetune.api.evaluation import score_verdict
from kubetune.api.modelexport import ModelExport
from kubetune.artifacts import ArtifactError, CreatedBy, read_manifest
from kubetune.config.export_args import ExportConfig
from kubetune.lifecycle import runs
from kubetune.lifecycle.inputs import Rejection
from kubetune.lifecycle.modelexport import (
    OWNED,
    ExportObservation,
    ExportSource,
    derive_modelexport_status,
    export_source,
    resolved_source,
)
from kubetune.lifecycle.runs import RunState
from kubetune.local.context import LocalContext, Outcome
from kubetune.local.environment import spec_environment
from kubetune.local.finetune import done_before, output_location
from kubetune.local.plan import LocalObject
from kubetune.local.sources import Artifact, Unresolved, resolve_source
from kubetune.local.status import Tracker
from kubetune.local.storage import stage_inputs, stage_output
from kubetune.local.workdir import Record
from kubetune.uris import UriError, UriResolver, absolute_uri


def score_gate(min_score: float | None, job: str, namespace: str, ctx: LocalContext,
               found: Artifact) -> Artifact | Unresolved:
    """``spec.source.minScore`` against the FineTuneJob's recorded ``status.evaluation``, as the operator decides."""
    record = ctx.work.load((namespace, "FineTuneJob", job))
    verdict = score_verdict(min_score, "FineTuneJob", job, record.status if record else None)
    return found if verdict is None else Unresolved(*verdict)


def _resolve(obj: LocalObject, ctx: LocalContext, tracker: Tracker) -> Artifact | Unresolved | None:
    """The referenced upstream output (its recorded base made absolute, as consumers elsewhere read it), None for
    a uri source, or Unresolved after recording why the export waits or fails."""
    mexp = obj.resource
    assert isinstance(mexp, ModelExport)
    source = mexp.spec.source
    if source.fine_tune_job_ref is None and source.model_export_ref is None:
        return None
    resolution = resolve_source(source, obj.namespace, ctx.work)
    if isinstance(resolution, Artifact) and source.fine_tune_job_ref is not None:
        resolution = score_gate(source.min_score, source.fine_tune_job_ref.name, obj.namespace, ctx, resolution)
    if isinstance(resolution, Unresolved):
        report(tracker, unresolved=resolution)
        return resolution
    if resolution.base_model_uri:  # relative to the producer's file
        producer = UriResolver(pvc_root=ctx.pvc_root.resolve(), base_dir=resolution.base_dir or obj.base_dir)
        resolution = replace(resolution, base_model_uri=absolute_uri(resolution.base_model_uri, producer))
    return resolution


def report(tracker: Tracker, *, run: RunState | None = None, **observed: Any) -> None:
    """Derive the status from what this export observed, with the function the operator uses, and record it."""
    obs = ExportObservation(generation=tracker.generation, now=tracker.clock(), job_name="", job=run, **observed)
    tracker.apply(derive_modelexport_status(tracker.status, obs), OWNED)


def _reject(tracker: Tracker, reason: str, message: str) -> Outcome:
    report(tracker, rejection=Rejection(reason, message))
    return Outcome.BLOCKED


def _fail(tracker: Tracker, message: str) -> Outcome:
    report(tracker, run=RunState(runs.FAILED, R.FAILED, message))
    return Outcome.FAILED


def export_document(obj: LocalObject, record: Record, chosen: ExportSource) -> dict[str, Any]:
    """The document the export pod would run for ``obj`` (the pod contract), with this run's uid."""
    from kubetune.config.mapping.export import export_pod_document

    mexp = obj.resource
    assert isinstance(mexp, ModelExport)
    return export_pod_document(mexp, model_uri=chosen.model_uri, adapter_uri=chosen.adapter_uri,
                               namespace=obj.namespace, uid=record.uid)


def run_modelexport(obj: LocalObject, record: Record, tracker: Tracker, ctx: LocalContext) -> Outcome:
    """Export ``obj`` (a ModelExport) here, keeping its record current. Returns how it ended."""
    from kubetune.config.mapping.export import resolve_modelexport

    mexp = obj.resource
    assert isinstance(mexp, ModelExport)
    resolver = ctx.resolver(obj)
    try:
        output_uri, export_dir = output_location(obj, record, resolver, mexp.spec.output.uri)
    except UriError as exc:  # a pvc:// output that leaves its claim: nothing is written
        return _reject(tracker, R.INVALID_SPEC, f"spec.output.uri: {exc}")
    if done_before(record, tracker, ctx, output_uri, export_dir):
        return Outcome.SUCCEEDED
    found = _resolve(obj, ctx, tracker)
    if isinstance(found, Unresolved):
        return Outcome.BLOCKED
    chosen = export_source(mexp.spec.source, found)
    if isinstance(chosen, Rejection):
        return _reject(tracker, chosen.reason, chosen.message)
    problem = stage_inputs(mexp.spec, ctx.mirror_root, [chosen.model_uri, chosen.adapter_uri], ctx.say)
    if problem:
        return _fail(tracker, f"inputs: {problem}")
    document = export_document(obj, record, chosen)
    try:
        config = resolve_modelexport(ModelExport.model_validate(document), resolver)
    except (UriError, ValueError) as exc:
        return _reject(tracker, R.INVALID_SPEC, str(exc))
    merged = "merged " if chosen.adapter_uri else ""
    report(tracker, run=RunState(runs.RUNNING), note=f"exporting {merged}model into {output_uri}",
           resolved_source=resolved_source(mexp.spec.source, chosen))
    return _export(config, obj, record, tracker, output_uri, ctx)


def _export(config: ExportConfig, obj: LocalObject, record: Record, tracker: Tracker, output_uri: str,
            ctx: LocalContext) -> Outcome:
    from kubetune.export.merge import ExportError
    from kubetune.export.pipeline import run_export
    from kubetune.export.quantize import QuantizationUnavailable

    # An interrupted export leaves only its hidden staging folder; a directory without a manifest is a leftover.
    config = config.model_copy(update={"overwrite": True})
    created_by = CreatedBy(kind="ModelExport", name=obj.name, namespace=obj.namespace, uid=record.uid)
    assert isinstance(obj.resource, ModelExport)
    try:
        with spec_environment(obj.resource.spec, ctx.say):
            run_export(config, created_by=created_by, strict_manifests=True)
    except KeyboardInterrupt:
        report(tracker, run=RunState(runs.SUSPENDED), note="interrupted; run again to export from the start")
        return Outcome.INTERRUPTED
    except (ExportError, ArtifactError, QuantizationUnavailable, OSError, ValueError) as exc:
        return _fail(tracker, str(exc))
    except Exception as exc:
        traceback.print_exc()
        return _fail(tracker, f"export failed: {exc}")
    manifest = read_manifest(config.export_dir)
    problem = stage_output(obj.resource.spec, ctx.mirror_root, output_uri, ctx.say)
    if problem:
        return _fail(tracker, f"output: {problem}")
    output = {"uri": output_uri, "artifactType": manifest.artifact_type,
              "baseModel": manifest.base_model.model_dump(exclude_none=True)}
    if manifest.quantization:
        output["quantization"] = manifest.quantization.model_dump(exclude_none=True)
    report(tracker, run=RunState(runs.SUCCEEDED), note=f"exported {len(manifest.files)} files", output=output)
    return Outcome.SUCCEEDED
