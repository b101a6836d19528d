"""Turn kubetune URIs into local paths: the same rule in pods and in local runs.

``pvc://claim/path`` is ``<pvc_root>/claim/path``: in pods the operator mounts each claim at
``/mnt/pvc/<claim>``; locally ``pvc_root`` is a directory of your choice (``kubetune run --pvc-root``).
``file:///abs`` is ``/abs``; a plain relative path is taken relative to ``base_dir`` (the CR file's folder).
``hf://org/name`` becomes the hub id ``org/name`` (transformers and datasets load it when a network is there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

POD_PVC_ROOT = "/mnt/pvc"
SCHEMES = ("file://", "pvc://", "hf://", "s3://")


class UriError(ValueError):
    """A URI that cannot be resolved here."""


def split_pvc(uri: str) -> tuple[str, str]:
    """``pvc://claim/some/path`` -> ("claim", "some/path")."""
    rest = uri.removeprefix("pvc://")
    claim, _, path = rest.partition("/")
    if not claim:
        raise UriError(f"{uri!r}: expected pvc://<claim>/<path>")
    return claim, path


@dataclass(frozen=True)
class UriResolver:
    """Resolve URIs against a pvc root and a base directory."""

    pvc_root: Path = Path(POD_PVC_ROOT)
    base_dir: Path = Path(".")

    def resolve(self, uri: str) -> str:
        """Local path (or hub id for hf://) for ``uri``. Raises UriError for what cannot be reached locally."""
        if uri.startswith("file://"):
            return uri.removeprefix("file://")
        if uri.startswith("pvc://"):
            claim, path = split_pvc(uri)
            return str(self.pvc_root / claim / path)
        if uri.startswith("hf://"):
            return uri.removeprefix("hf://")
        if uri.startswith("s3://"):
            raise UriError(f"{uri!r}: s3:// sources are staged by the pod's init step; mount or copy them locally")
        if "://" in uri:
            raise UriError(f"{uri!r}: unknown scheme; expected one of {', '.join(SCHEMES)} or a path")
        path = Path(uri).expanduser()
        return str(path if path.is_absolute() else (self.base_dir / path).resolve())

    def join(self, uri: str, *parts: str) -> str:
        """Append path segments to a URI, keeping its scheme (``pvc://m/out/`` + ``job-1234`` -> ``pvc://m/out/job-1234``)."""
        return "/".join([uri.rstrip("/"), *[p.strip("/") for p in parts]])
