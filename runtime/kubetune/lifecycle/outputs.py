"""Where a producer (a FineTuneJob, a ModelExport) writes: ``<spec.output.uri>/<name>-<uid8>/``, a fresh folder per
object that is never overwritten. The operator and ``kubetune run`` name it with this one function."""

from __future__ import annotations

from kubetune.names import output_folder


def output_uri(parent_uri: str, name: str, uid: str) -> str:
    """``<parent_uri>/<name>-<uid8>/``. Raises ValueError when the object has no uid yet."""
    if len(uid.replace("-", "")) < 8:
        raise ValueError(f"{name!r} has no uid yet")
    return f"{parent_uri.rstrip('/')}/{output_folder(name, uid)}/"
