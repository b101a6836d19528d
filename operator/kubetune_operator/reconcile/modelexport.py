"""ModelExport: wait for the source, then run one export Job and mirror its state."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kubetune.api.common import ArtifactType
from kubetune.api.modelexport import ModelExport, QuantMethod
from kubetune.lifecycle.runs import is_terminal
from kubetune.uris import UriError
from kubetune_operator.gate import score_gate
from kubetune_operator.kinds import JOB, MODELEXPORT
from kubetune_operator.kube import Invalid
from kubetune_operator.meta import output_dir
from kubetune_operator.reconcile.base import (
    Context,
    Refused,
    apply_children,
    fetch_refs,
    get_owned,
    parse_error,
    reconcile_run,
    write_status,
)
from kubetune_operator.render import pods
from kubetune_operator.render.export import ExportInputs, job_name, render_export
from kubetune_operator.resolve import Ref, Unresolved, ref_of, resolve_ref
from kubetune_operator.status.common import Rejection
from kubetune_operator.status.export import ExportObservation, derive_modelexport_status
from kubetune_operator.status.launchers import observe

OWNED = ("observedGeneration", "phase", "reason", "message", "conditions", "resolvedSource", "job", "output")
WRONG_ARTIFACT_TYPE = "WrongArtifactType"


def references(mexp: ModelExport) -> list[Ref]:
    ref = ref_of(mexp.spec.source)
    return [ref] if ref else []


def export_inputs(body: dict[str, Any], mexp: ModelExport,
                  fetched: dict[Ref, dict[str, Any] | None]) -> ExportInputs | Unresolved | Rejection:
    """What to export, from the source: an upstream output (adapter on its base, or a full model) or URIs."""
    source = mexp.spec.source
    out_uri = output_dir(body, mexp.spec.output.uri)
    ref = ref_of(source)
    if ref is None:
        assert source.model is not None  # the CRD's CEL rule: one source
        return ExportInputs(model_uri=source.model.uri, output_uri=out_uri,
                            adapter_uri=source.adapter.uri if source.adapter else None)
    found = resolve_ref(ref, fetched.get(ref))
    if isinstance(found, Unresolved):
        return found
    blocked = score_gate(source.min_score, ref, fetched.get(ref))
    if blocked is not None:
        return blocked
    if found.artifact_type == ArtifactType.LORA_ADAPTER:
        base = source.model.uri if source.model else found.base_model_uri
        if not base:
            return Rejection(WRONG_ARTIFACT_TYPE, f"{ref[0]} {ref[1]!r} wrote an adapter without a recorded base "
                             "model; set spec.source.model.uri to its base")
        return ExportInputs(model_uri=base, output_uri=out_uri, adapter_uri=found.uri)
    return ExportInputs(model_uri=found.uri, output_uri=out_uri)


def resolved_source(mexp: ModelExport, inputs: ExportInputs) -> dict[str, Any]:
    ref = ref_of(mexp.spec.source)
    out: dict[str, Any] = {"uri": inputs.adapter_uri or inputs.model_uri, "baseModelUri": inputs.model_uri}
    if ref:
        out["fineTuneJob" if ref[0] == "FineTuneJob" else "modelExport"] = ref[1]
    return out


def output_status(mexp: ModelExport, inputs: ExportInputs) -> dict[str, Any]:
    spec = mexp.spec
    adapter_only = inputs.adapter_uri is not None and not spec.merge
    out: dict[str, Any] = {
        "uri": inputs.output_uri,
        "artifactType": ArtifactType.LORA_ADAPTER if adapter_only else ArtifactType.FULL_MODEL,
        "baseModel": {"uri": inputs.model_uri},
    }
    if spec.quantization and spec.quantization.method != QuantMethod.NONE:
        out["quantization"] = {"method": spec.quantization.method, "bits": spec.quantization.bits}
    return out


def reconcile_modelexport(ctx: Context, namespace: str, name: str) -> None:
    reconcile_run(ctx, MODELEXPORT, namespace, name, is_terminal, _reconcile)


def _reconcile(ctx: Context, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    now = ctx.now()
    base = {"generation": meta.get("generation", 1), "now": now, "job_name": job_name(meta["name"])}
    try:
        mexp = ModelExport.model_validate(body)
    except ValidationError as exc:
        obs = ExportObservation(**base, rejection=parse_error("ModelExport", exc))
        write_status(ctx, MODELEXPORT, body, derive_modelexport_status(body.get("status"), obs), OWNED, now)
        return
    job = get_owned(ctx, JOB, body, job_name(meta["name"]))
    inputs = export_inputs(body, mexp, fetch_refs(ctx, meta["namespace"], references(mexp)))
    if isinstance(inputs, Unresolved):
        obs = ExportObservation(**base, unresolved=inputs if job is None or inputs.final else None,
                                job=observe("Job", job))
    elif isinstance(inputs, Rejection):
        obs = ExportObservation(**base, rejection=inputs)
    else:
        try:
            for uri in (inputs.model_uri, inputs.adapter_uri):
                if uri:
                    pods.pod_path(uri)  # s3:// and unknown schemes cannot be opened in the pod
            job = apply_children(ctx, body, render_export(body, mexp, inputs, ctx.settings))["Job"]
            obs = ExportObservation(**base, resolved_source=resolved_source(mexp, inputs), job=observe("Job", job),
                                    output=output_status(mexp, inputs), queue_name=mexp.spec.queue_name)
        except (UriError, Invalid) as exc:
            obs = ExportObservation(**base, rejection=Rejection("InvalidSpec", str(exc)))
        except Refused as exc:
            obs = ExportObservation(**base, rejection=exc.rejection)
    write_status(ctx, MODELEXPORT, body, derive_modelexport_status(body.get("status"), obs), OWNED, now)
