"""Stage ``s3://`` inputs into a local mirror before a run and upload the output from it afterwards.

The mirror is the folder kubetune.uris maps ``s3://bucket/key`` to (``<s3_root>/bucket/key``): the runtime
config names mirror paths, so training, export and serving read and write local files as they do for pvc://.
Pods stage with ``kubetune stage`` (inputs in an init container, the output after the main command), ``kubetune
run`` calls the same functions in-process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.artifacts import MANIFEST_NAME
from kubetune.storage import s3 as store
from kubetune.uris import UriResolver, s3_uris


@dataclass(frozen=True)
class Mirror:
    """The local mirror of s3:// locations under ``root``; ``endpoint``/``region`` override the environment."""

    root: Path
    endpoint: str | None = None
    region: str | None = None

    def path(self, uri: str) -> Path:
        return Path(UriResolver(s3_root=self.root).resolve(uri))

    def client(self) -> Any:
        return store.client(self.endpoint, self.region)


def stage_in(mirror: Mirror, uris: Iterable[str | None], say: store.Say = print) -> list[Path]:
    """Download every s3:// URI among ``uris`` into the mirror; returns the local paths. Others are left alone."""
    wanted = s3_uris(uris)
    if not wanted:
        return []
    s3 = mirror.client()
    return [store.download(uri, mirror.path(uri), s3=s3, say=say) for uri in wanted]


def stage_out(mirror: Mirror, uri: str, say: store.Say = print) -> list[str]:
    """Upload the mirror folder of the s3:// output ``uri``, the artifact manifest last; returns the keys."""
    local = mirror.path(uri)
    if not local.is_dir():
        raise store.StorageError(f"{uri}: nothing to upload, {local} does not exist")
    return store.upload(local, uri, s3=mirror.client(), last=MANIFEST_NAME, say=say)
