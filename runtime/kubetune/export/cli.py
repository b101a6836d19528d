"""`kubetune export FILE [key=value ...]`: FILE is a runtime config (LLaMA-Factory keys) or a ModelExport."""

from __future__ import annotations

import argparse
import sys

from kubetune.api.modelexport import ModelExport
from kubetune.artifacts import ArtifactError, CreatedBy
from kubetune.config.export_args import ExportConfig
from kubetune.config.files import ConfigError, fail, is_custom_resource, parse_overrides, read_document, validate
from kubetune.config.mapping.export import resolve_modelexport
from kubetune.uris import UriError, resolver_for_file


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("file", help="export config (LLaMA-Factory keys) or a ModelExport resource (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys (flat configs)")
    parser.add_argument("--pvc-root", help="directory holding pvc://<claim>/ paths (default /mnt/pvc)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty export directory")


def load_export(args: argparse.Namespace) -> tuple[ExportConfig, CreatedBy | None]:
    """The typed export config and provenance described by the command line."""
    doc = read_document(args.file)
    if is_custom_resource(doc):
        if doc.data.get("kind") != "ModelExport":
            raise fail(doc, "kind", f"expected ModelExport (or a flat export config), got {doc.data.get('kind')!r}")
        mexp = validate(ModelExport, doc.data, doc)
        config = resolve_modelexport(mexp, resolver_for_file(args.file, args.pvc_root))
        meta = mexp.metadata
        created_by = CreatedBy(kind="ModelExport", name=meta.get("name"), namespace=meta.get("namespace"),
                               uid=meta.get("uid"))
        return config.model_copy(update={"overwrite": args.overwrite}), created_by
    data = {**doc.data, **parse_overrides(args.overrides)}
    if args.overwrite:
        data["overwrite"] = True
    return validate(ExportConfig, data, doc), None


def run(args: argparse.Namespace, command: str) -> int:
    del command
    from kubetune.export.merge import ExportError
    from kubetune.export.pipeline import run_export
    from kubetune.export.quantize import QuantizationUnavailable

    try:
        config, created_by = load_export(args)
        run_export(config, created_by=created_by, strict_manifests=created_by is not None)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (UriError, ValueError, ExportError, ArtifactError, QuantizationUnavailable, OSError) as exc:
        print(f"kubetune export: {exc}", file=sys.stderr)
        return 1
    return 0
