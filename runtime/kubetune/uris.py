"""Turn kubetune URIs into local paths: the same rule in pods and in local runs.

``pvc://claim/path`` is ``<pvc_root>/claim/path``: in pods the operator mounts each claim at
``/mnt/pvc/<claim>``; locally ``pvc_root`` is a directory of your choice (``kubetune run --pvc-root``).
``file:///abs`` is ``/abs``; a relative path, plain or as ``file://rel/path`` (a local-run convenience: the CRD
pattern wants a scheme), is taken relative to ``base_dir`` (the CR file's folder).
``hf://org/name`` becomes the hub id ``org/name`` (transformers and datasets load it when a network is there).
``s3://bucket/key`` is ``<s3_root>/bucket/key``, the local mirror that kubetune.storage.staging downloads inputs
into and uploads outputs from (``/mnt/s3`` in pods, ``<work-dir>/s3`` for ``kubetune run``).

A ``pvc://`` URI never leaves its claim: the claim is a DNS-1123 subdomain (a PersistentVolumeClaim name), the path
has no ``..`` segment, and the resolved path (symlinks followed) must stay under ``<pvc_root>/<claim>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kubetune.names import subdomain_problem

POD_PVC_ROOT = "/mnt/pvc"
POD_S3_ROOT = "/mnt/s3"
SCHEMES = ("file://", "pvc://", "hf://", "s3://")


class UriError(ValueError):
    """A URI that cannot be resolved here."""


def split_pvc(uri: str) -> tuple[str, str]:
    """``pvc://claim/some/path`` -> ("claim", "some/path"), the path normalised (no ``.`` or empty segments).

    Raises UriError when the claim is not a DNS-1123 subdomain (a PersistentVolumeClaim name) or the path has a
    ``..`` segment or a NUL byte.
    """
    rest = uri.removeprefix("pvc://")
    claim, _, path = rest.partition("/")
    if not claim:
        raise UriError(f"{uri!r}: expected pvc://<claim>/<path>")
    if (problem := subdomain_problem(claim)) is not None:
        raise UriError(f"{uri!r}: the claim {problem}")
    if "\0" in path:
        raise UriError(f"{uri!r}: the path holds a NUL byte")
    parts = [p for p in PurePosixPath(path).parts if p not in ("/", ".")]
    if ".." in parts:
        raise UriError(f"{uri!r}: '..' is not allowed in a pvc:// path; a path stays inside its claim")
    return claim, "/".join(parts)


def contained(uri: str) -> str:
    """``uri`` when it cannot leave its claim or bucket; raises UriError otherwise.

    The CRD's pattern rejects the same URIs at admission; this is the second line, for objects stored before the
    pattern existed and for local runs: a claim named ``..`` or a path with ``..`` would reach something else.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme == "file":
        return uri
    if scheme == "pvc":
        split_pvc(uri)
        return uri
    if "\0" in rest or any(segment in (".", "..") for segment in rest.split("/")):
        raise UriError(f"{uri!r}: '.' and '..' path segments are not allowed (the path must stay inside its location)")
    return uri


def inside(path: Path, root: Path, uri: str) -> Path:
    """``path`` when it stays under ``root`` once symlinks are followed. Raises UriError when it leaves it."""
    real, real_root = path.resolve(), root.resolve()
    if real != real_root and real_root not in real.parents:
        raise UriError(f"{uri!r}: resolves to {real}, outside {real_root} (a symlink leads out); "
                       "a pvc:// path must stay inside its claim")
    return path


@dataclass(frozen=True)
class UriResolver:
    """Resolve URIs against a pvc root and a base directory."""

    pvc_root: Path = Path(POD_PVC_ROOT)
    base_dir: Path = Path(".")
    s3_root: Path | None = Path(POD_S3_ROOT)  # the local mirror of s3:// locations; None: not resolvable here

    def resolve(self, uri: str) -> str:
        """Local path (or hub id for hf://) for ``uri``. Raises UriError for what cannot be reached locally."""
        if uri.startswith("file://"):
            return self._local(uri.removeprefix("file://"))
        if uri.startswith("pvc://"):
            claim, path = split_pvc(uri)
            root = self.pvc_root / claim
            return str(inside(root / path if path else root, root, uri))
        if uri.startswith("hf://"):
            return contained(uri).removeprefix("hf://")
        if uri.startswith("s3://"):
            return str(self._s3(uri))
        if "://" in uri:
            raise UriError(f"{uri!r}: unknown scheme; expected one of {', '.join(SCHEMES)} or a path")
        return self._local(uri)

    def _s3(self, uri: str) -> Path:
        if self.s3_root is None:
            raise UriError(f"{uri!r}: s3:// locations are staged into a local mirror; there is no local mirror here")
        parts = [p for p in contained(uri).removeprefix("s3://").split("/") if p]
        if not parts:
            raise UriError(f"{uri!r}: expected s3://<bucket>/<path>")
        return self.s3_root.joinpath(*parts)

    def _local(self, path_text: str) -> str:
        path = Path(path_text).expanduser()
        return str(path if path.is_absolute() else (self.base_dir / path).resolve())

    def join(self, uri: str, *parts: str) -> str:
        """Append path segments to a URI, keeping its scheme (``pvc://m/out/`` + ``job-1234`` -> ``pvc://m/out/job-1234``)."""
        return "/".join([uri.rstrip("/"), *[p.strip("/") for p in parts]])


def s3_uris(uris: Iterable[str | None]) -> list[str]:
    """The distinct s3:// URIs among ``uris``, in order."""
    return list(dict.fromkeys(u for u in uris if u and u.startswith("s3://")))


def path_to_uri(path: str) -> str:
    """A model or data location as a URI: hub ids (org/name) become hf://, paths become file:// (absolute)."""
    if "://" in path:
        return path
    local = Path(path).expanduser()
    if not (local.is_absolute() or path.startswith((".", "~")) or local.exists()) and \
            re.fullmatch(r"[\w.-]+/[\w.-]+", path):
        return f"hf://{path}"
    return local_uri(path)


def local_uri(path: str) -> str:
    """A local path as an absolute file:// URI (a URI stays as it is)."""
    return path if "://" in path else f"file://{Path(path).expanduser().resolve()}"


def uri_to_path(uri: str) -> str:
    """The inverse of path_to_uri for local runs: file:// to its path, hf:// to the hub id."""
    for scheme in ("file://", "hf://"):
        if uri.startswith(scheme):
            return uri.removeprefix(scheme)
    return uri


def absolute_uri(uri: str, resolver: UriResolver) -> str:
    """``uri`` as consumers elsewhere can read it: pvc://, hf://, s3:// unchanged, local paths as file:///abs."""
    if uri.startswith(("pvc://", "hf://", "s3://")):
        return uri
    trailing = "/" if uri.endswith("/") else ""
    return "file://" + resolver.resolve(uri).rstrip("/") + trailing


def resolver_for_file(config_file: str | Path, pvc_root: str | None = None) -> UriResolver:
    """Resolver for a CR file run directly: relative paths against the file's folder."""
    base = Path(config_file).resolve().parent
    return UriResolver(pvc_root=Path(pvc_root) if pvc_root else UriResolver().pvc_root, base_dir=base)
