"""Run a ModelExport on this machine: resolve its source, map the spec, run the export pipeline the Job runs.

A ``fineTuneJobRef`` source is the job's adapter merged into the base recorded in its manifest (or into
``source.model`` when given); a ``modelExportRef`` source re-exports that model; ``adapter``/``model`` URIs are used
as they are. The export writes ``<output.uri>/<name>-<uid8>/`` with its manifest last.
"""

from __future__ import annotations

import traceback

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import ModelExportPhase as P
from kubetune.api.conditions import Reason as R
from kubetune.api.evaluation import score_verdict
from kubetune.api.modelexport import ModelExport
from kubetune.artifacts import ArtifactError, CreatedBy, read_manifest
from kubetune.lifecycle import runs
from kubetune.lifecycle.inputs import unresolved_status
from kubetune.local.context import LocalContext, Outcome
from kubetune.local.environment import spec_environment
from kubetune.local.finetune import ACCEPTED, done_before, output_location, restart_conditions
from kubetune.local.plan import LocalObject
from kubetune.local.sources import Artifact, Unresolved, resolve_source
from kubetune.local.status import Cond, Tracker
from kubetune.local.storage import stage_inputs, stage_output
from kubetune.local.workdir import Record
from kubetune.uris import UriError, UriResolver


class SourceError(ValueError):
    """The source resolved but cannot be exported as asked (wrong artifact type, no base model)."""


def export_inputs(mexp: ModelExport, source: Artifact, resolver: UriResolver) -> tuple[str, list[str], str | None]:
    """(base model path, adapter paths, base model uri for the manifest) for a resolved source."""
    spec = mexp.spec.source
    if spec.adapter is not None or (spec.model is not None and source.origin is None):
        assert spec.model is not None
        adapters = [resolver.resolve(spec.adapter.uri)] if spec.adapter else []
        return resolver.resolve(spec.model.uri), adapters, spec.model.uri
    artifact_dir = resolver.resolve(source.uri)
    if source.artifact_type != "lora-adapter":
        return artifact_dir, [], source.base_model_uri or source.uri
    if spec.model is not None:  # base override, e.g. the bf16 base after qlora
        return resolver.resolve(spec.model.uri), [artifact_dir], spec.model.uri
    base = source.base_model_path(resolver)
    if base is None:
        raise SourceError(f"{source.origin_name}: the adapter's manifest names no base model; set spec.source.model")
    return base, [artifact_dir], source.base_model_uri


def score_gate(min_score: float | None, job: str, namespace: str, ctx: LocalContext,
               found: Artifact) -> Artifact | Unresolved:
    """``spec.source.minScore`` against the FineTuneJob's recorded ``status.evaluation``, as the operator decides."""
    record = ctx.work.load((namespace, "FineTuneJob", job))
    verdict = score_verdict(min_score, "FineTuneJob", job, record.status if record else None)
    return found if verdict is None else Unresolved(*verdict)


def _resolve(obj: LocalObject, ctx: LocalContext, tracker: Tracker) -> Artifact | None:
    mexp = obj.resource
    assert isinstance(mexp, ModelExport)
    source = mexp.spec.source
    if source.fine_tune_job_ref is None and source.model_export_ref is None:
        assert source.model is not None
        return Artifact(uri=source.model.uri)
    resolution = resolve_source(source, obj.namespace, ctx.work)
    if isinstance(resolution, Artifact) and source.fine_tune_job_ref is not None:
        resolution = score_gate(source.min_score, source.fine_tune_job_ref.name, obj.namespace, ctx, resolution)
    if isinstance(resolution, Unresolved):
        waiting = unresolved_status("ModelExport", resolution)
        tracker.set(waiting.phase, waiting.reason, waiting.message, waiting.conditions)
        return None
    return resolution


def _fail(tracker: Tracker, reason: R, message: str) -> Outcome:
    end = runs.failed(reason, message)
    tracker.set(end.phase, end.reason, end.message, end.conditions)
    return Outcome.FAILED


def run_modelexport(obj: LocalObject, record: Record, tracker: Tracker, ctx: LocalContext) -> Outcome:
    """Export ``obj`` (a ModelExport) here, keeping its record current. Returns how it ended."""
    from kubetune.config.mapping.export import export_config_from_modelexport

    mexp = obj.resource
    assert isinstance(mexp, ModelExport)
    resolver = ctx.resolver(obj)
    try:
        output_uri, export_dir = output_location(obj, record, resolver, mexp.spec.output.uri)
    except UriError as exc:  # a pvc:// output that leaves its claim: nothing is written
        return _fail(tracker, R.INVALID_SPEC, f"spec.output.uri: {exc}")
    if done_before(record, tracker, ctx, output_uri, export_dir):
        return Outcome.SUCCEEDED
    source = _resolve(obj, ctx, tracker)
    if source is None:
        return Outcome.BLOCKED
    problem = stage_inputs(mexp.spec, ctx.mirror_root, [source.uri, source.base_model_uri], ctx.say)
    if problem:
        return _fail(tracker, R.FAILED, f"inputs: {problem}")
    try:
        base, adapters, base_uri = export_inputs(mexp, source, resolver)
        calibration = mexp.spec.quantization.calibration if mexp.spec.quantization else None
        config = export_config_from_modelexport(
            mexp, base_model=base, adapters=adapters, export_dir=str(export_dir), base_model_uri=base_uri,
            calibration=resolver.resolve(calibration.uri) if calibration else None)
    except (SourceError, UriError, ValueError) as exc:
        reason = R.WRONG_ARTIFACT_TYPE if isinstance(exc, SourceError) else R.INVALID_SPEC
        return _fail(tracker, reason, str(exc))
    resolved = {"uri": source.uri, "baseModelUri": base_uri}
    if source.origin:
        resolved["fineTuneJob" if source.origin[0] == "FineTuneJob" else "modelExport"] = source.origin[1]
    message = f"exporting {'merged ' if adapters else ''}model into {output_uri}"
    tracker.set(P.RUNNING, R.RUNNING, message,
                [ACCEPTED, Cond(T.SOURCE_READY, True, R.RESOLVED, f"source {source.uri}"),
                 Cond(T.RUNNING, True, R.RUNNING, message), *restart_conditions(record)],
                resolvedSource={k: v for k, v in resolved.items() if v}, output=None)
    return _export(config, obj, record, tracker, output_uri, ctx)


def _export(config, obj: LocalObject, record: Record, tracker: Tracker, output_uri: str,  # type: ignore[no-untyped-def]
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
        message = "interrupted; run again to export from the start"
        tracker.set(P.PENDING, R.PENDING, message, [Cond(T.RUNNING, False, R.PENDING, message)])
        return Outcome.INTERRUPTED
    except (ExportError, ArtifactError, QuantizationUnavailable, OSError, ValueError) as exc:
        return _fail(tracker, R.FAILED, str(exc))
    except Exception as exc:
        traceback.print_exc()
        return _fail(tracker, R.FAILED, f"export failed: {exc}")
    manifest = read_manifest(config.export_dir)
    problem = stage_output(obj.resource.spec, ctx.mirror_root, output_uri, ctx.say)
    if problem:
        return _fail(tracker, R.FAILED, f"output: {problem}")
    output = {"uri": output_uri, "artifactType": manifest.artifact_type,
              "baseModel": manifest.base_model.model_dump(exclude_none=True)}
    if manifest.quantization:
        output["quantization"] = manifest.quantization.model_dump(exclude_none=True)
    message = f"exported {len(manifest.files)} files"
    end = runs.succeeded(message)
    tracker.set(end.phase, end.reason, end.message, end.conditions, output=output)
    return Outcome.SUCCEEDED
