"""What every local executor gets: the work directory, where pvc:// lives, how to talk to people."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from kubetune.local.plan import LocalObject
from kubetune.local.workdir import WorkDir
from kubetune.uris import UriResolver

DEFAULT_PVC_ROOT = ".kubetune/pvc"
LOCAL_HOST = "127.0.0.1"


class Outcome(StrEnum):
    """How one object's local run ended."""

    SUCCEEDED = "Succeeded"      # finished (or had finished before); consumers may run
    SERVED = "Served"            # an InferenceService served until it was stopped
    BLOCKED = "Blocked"          # could not start (invalid for this machine, inputs missing or failed)
    FAILED = "Failed"            # started and failed
    INTERRUPTED = "Interrupted"  # Ctrl-C: state kept, a rerun continues


@dataclass(frozen=True)
class LocalContext:
    """Settings of one `kubetune run` invocation, typed once at the edge.

    Attributes:
        work: the work directory (records of every object run here).
        pvc_root: directory standing in for the cluster's volumes: pvc://claim/path is pvc_root/claim/path.
        host: address the InferenceService binds to.
        port: port override for the InferenceService (None: spec.port).
        api_key: key for an InferenceService with spec.auth (locally there are no Secrets).
        console: show progress bars (else progress is printed as lines).
        say: prints a line for people.
        s3_root: the local mirror of s3:// locations (default WORK_DIR/s3).
    """

    work: WorkDir
    pvc_root: Path
    host: str = LOCAL_HOST
    port: int | None = None
    api_key: str | None = None
    console: bool = True
    say: Callable[[str], None] = print
    s3_root: Path | None = None

    @property
    def mirror_root(self) -> Path:
        return (self.s3_root or self.work.root / "s3").resolve()

    def resolver(self, obj: LocalObject) -> UriResolver:
        """Resolves obj's URIs: pvc:// under pvc_root, s3:// in the mirror, relative paths against obj's file."""
        return UriResolver(pvc_root=self.pvc_root.resolve(), base_dir=obj.base_dir, s3_root=self.mirror_root)

