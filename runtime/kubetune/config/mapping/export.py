"""ModelExport -> ExportConfig: what the export pod runs and what `kubetune run` exports with.

The pod contract is :func:`export_pod_document`: the ModelExport with its source rewritten to the URIs its
references resolved to. The operator mounts it into the export pod, which runs ``kubetune export FILE``;
``kubetune run`` builds the same document and exports it the same way (:func:`resolve_modelexport` ->
:func:`export_config_from_modelexport`). Torch-free.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.modelexport import ModelExport, QuantMethod
from kubetune.config.export_args import ExportConfig
from kubetune.names import output_folder, subdomain_problem
from kubetune.uris import UriError, UriResolver


def export_pod_document(mexp: ModelExport, *, model_uri: str, adapter_uri: str | None, namespace: str,
                        uid: str) -> dict[str, Any]:
    """The ModelExport the export pod runs, with its source rewritten to concrete URIs (no references left).

    ``kubetune export`` takes this document as it takes a ModelExport on a laptop: it resolves ``pvc://`` under
    its pvc root, writes ``<output.uri>/<name>-<uid8>/`` and records the object in the artifact manifest.
    """
    spec = mexp.spec.wire()
    model: dict[str, Any] = {"uri": model_uri}
    given = mexp.spec.source.model
    if given is not None and given.credentials_secret_ref is not None:
        model["credentialsSecretRef"] = given.credentials_secret_ref.wire()
    spec["source"] = {"model": model, **({"adapter": {"uri": adapter_uri}} if adapter_uri else {})}
    return {
        "apiVersion": mexp.api_version,
        "kind": mexp.kind,
        "metadata": {"name": mexp.metadata["name"], "namespace": namespace, "uid": uid},
        "spec": spec,
    }


def export_config_from_modelexport(mexp: ModelExport, *, base_model: str, adapters: list[str], export_dir: str,
                                   calibration: str | None = None, base_model_uri: str | None = None
                                   ) -> ExportConfig:
    """Map a ModelExport whose sources are already resolved to local paths onto :class:`ExportConfig`.

    The local runner resolves ``fineTuneJobRef``/``modelExportRef`` sources itself and calls this; uri sources
    go through :func:`resolve_modelexport`.
    """
    spec = mexp.spec
    fields: dict[str, Any] = {
        "model_name_or_path": base_model,
        "adapter_name_or_path": adapters,
        "export_dir": export_dir,
        "infer_dtype": str(spec.dtype),
        "merge": spec.merge,
        "max_shard_size": spec.max_shard_size,
        "base_model_uri": base_model_uri,
    }
    quant = spec.quantization
    if quant is not None and quant.method != QuantMethod.NONE:
        fields.update(export_quantization_bit=quant.bits, export_quantization_method=str(quant.method),
                      export_quantization_group_size=quant.group_size, export_quantization_dataset=calibration)
        if quant.calibration is not None:
            fields.update(export_quantization_nsamples=quant.calibration.samples,
                          export_quantization_maxlen=quant.calibration.max_length)
    return ExportConfig.model_validate(fields)


def output_dir_name(mexp: ModelExport) -> str:
    """``<name>-<uid8>``, the directory the export writes under ``spec.output.uri`` (``<name>`` without a uid)."""
    name = str(mexp.metadata.get("name") or "export")
    uid = str(mexp.metadata.get("uid") or "")
    # The name becomes a folder: outside a cluster nobody else has checked it.
    if (problem := subdomain_problem(name)) is not None:
        raise UriError(f"metadata.name: {problem}")
    if uid and not (uid.replace("-", "").isascii() and uid.replace("-", "").isalnum()):
        raise UriError(f"metadata.uid: {uid!r} is not a UID (letters, digits and '-')")
    return output_folder(name, uid) if uid else name


def resolve_modelexport(mexp: ModelExport, resolver: UriResolver) -> ExportConfig:
    """Build the export config of a ModelExport whose source is given by URIs.

    Raises UriError for references to other objects: those need the local runner (`kubetune run`) or the
    operator, which know where the referenced object's output is.
    """
    source = mexp.spec.source
    if source.fine_tune_job_ref or source.model_export_ref:
        ref = source.fine_tune_job_ref or source.model_export_ref
        raise UriError(f"spec.source references {ref.name if ref else '?'}: run the referenced object first and "
                       "export with `kubetune run` (it resolves references), or give spec.source.model.uri")
    if source.model is None:
        raise UriError("spec.source.model.uri is required when exporting by URI")
    calibration = None
    quant = mexp.spec.quantization
    if quant is not None and quant.calibration is not None:
        calibration = resolver.resolve(quant.calibration.uri)
    export_dir = resolver.resolve(resolver.join(mexp.spec.output.uri, output_dir_name(mexp)))
    return export_config_from_modelexport(
        mexp,
        base_model=resolver.resolve(source.model.uri),
        adapters=[resolver.resolve(source.adapter.uri)] if source.adapter else [],
        export_dir=export_dir,
        calibration=calibration,
        base_model_uri=source.model.uri,
    )
