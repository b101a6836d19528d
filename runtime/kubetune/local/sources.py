"""Resolve a model source (a uri or a reference to another kubetune object) for a local run.

References are looked up in the work directory: objects run earlier in the same command have their record there
already, as do objects from earlier runs. The verdict is the lifecycle's (:mod:`kubetune.lifecycle.sources`), the
same the operator reaches: a failed upstream fails its consumers (``SourceFailed``), one that never ran here is
``SourceNotFound``, one that has not finished is ``WaitingForSource``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune.lifecycle.sources import Artifact, Resolution, Unresolved, ref_of, source_verdict, uri_source
from kubetune.local.workdir import WorkDir

__all__ = ["Artifact", "Resolution", "Unresolved", "resolve_reference", "resolve_source"]


def resolve_reference(kind: str, name: str, namespace: str, work: WorkDir) -> Resolution:
    """The output of the referenced object, from its record in ``work``; a missing record is final, as nothing
    else will run it while this command runs."""
    record = work.load((namespace, kind, name))
    return source_verdict(
        (kind, name), None if record is None else record.status, absent_is_final=True,
        absent=f"{kind} {name!r} is not in the given files and has not run in {work.root}; add its file to the command",
        base_dir=Path(record.file).parent if record is not None and record.file else None)


def resolve_source(source: Any, namespace: str, work: WorkDir) -> Resolution:
    """A uri source as-is, or the output of the object it references."""
    ref = ref_of(source)
    return uri_source(source) if ref is None else resolve_reference(*ref, namespace, work)
