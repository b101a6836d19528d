"""ModelExport: wait for the source, then run one export Job and mirror its state."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kubetune.api.common import ArtifactType
from kubetune.api.modelexport import ModelExport, QuantMethod
from kubetune.lifecycle.inputs import Rejection, blocking
from kubetune.lifecycle.modelexport import (
    OWNED,
    ExportObservation,
    ExportSource,
    derive_modelexport_status,
    export_source,
    resolved_source,
)
from kubetune.lifecycle.runs import is_terminal
from kubetune.lifecycle.sources import references
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
from kubetune_operator.resolve import Artifact, Ref, Unresolved, ref_of, resolve_ref
from kubetune_operator.status.launchers import observe


def export_inputs(body: dict[str, Any], mexp: ModelExport,
                  fetched: dict[Ref, dict[str, Any] | None]) -> ExportInputs | Unresolved | Rejection:
    """What to export (the lifecycle's choice from the source), into the fresh output directory."""
    source = mexp.spec.source
    ref = ref_of(source)
    found: Artifact | None = None
    if ref is not None:
        resolution = resolve_ref(ref, fetched.get(ref))
        if isinstance(resolution, Unresolved):
            return resolution
        found = resolution
        blocked = score_gate(source.min_score, ref, fetched.get(ref))
        if blocked is not None:
            return blocked
    chosen = export_source(source, found)
    if isinstance(chosen, Rejection):
        return chosen
    return ExportInputs(model_uri=chosen.model_uri, output_uri=output_dir(body, mexp.spec.output.uri),
                        adapter_uri=chosen.adapter_uri)


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
        obs = ExportObservation(**base, unresolved=blocking(inputs, started=job is not None),
                                job=observe("Job", job))
    elif isinstance(inputs, Rejection):
        obs = ExportObservation(**base, rejection=inputs)
    else:
        try:
            for uri in (inputs.model_uri, inputs.adapter_uri):
                if uri:
                    pods.pod_path(uri)  # s3:// and unknown schemes cannot be opened in the pod
            job = apply_children(ctx, body, render_export(body, mexp, inputs, ctx.settings))["Job"]
            chosen = ExportSource(inputs.model_uri, inputs.adapter_uri)
            obs = ExportObservation(**base, resolved_source=resolved_source(mexp.spec.source, chosen),
                                    job=observe("Job", job),
                                    output=output_status(mexp, inputs))
        except (UriError, Invalid) as exc:
            obs = ExportObservation(**base, rejection=Rejection("InvalidSpec", str(exc)))
        except Refused as exc:
            obs = ExportObservation(**base, rejection=exc.rejection)
    write_status(ctx, MODELEXPORT, body, derive_modelexport_status(body.get("status"), obs), OWNED, now)
