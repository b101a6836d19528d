"""ModelExport -> ExportConfig: what the export pod runs and what `kubetune run` exports with.

:func:`export_config_from_modelexport` maps a ModelExport whose sources are local paths; the operator and the
local runner resolve ``fineTuneJobRef``/``modelExportRef`` first, :func:`resolve_modelexport` covers uri sources.
Torch-free.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.modelexport import ModelExport, QuantMethod
from kubetune.config.export_args import ExportConfig
from kubetune.names import output_folder, subdomain_problem
from kubetune.uris import UriError, UriResolver


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
