"""Resolve references between kubetune objects into concrete artifacts, from objects read from the apiserver.

The verdict (usable, waiting, failed, not found) is the lifecycle's (:mod:`kubetune.lifecycle.sources`), shared with
``kubetune run``; this module only says how the operator reads a referenced object: the caller fetches it and passes
its body in, so everything here is a plain function.
"""

from __future__ import annotations

from typing import Any

from kubetune.lifecycle.sources import (
    FINETUNEJOB,
    MODELEXPORT,
    Artifact,
    Ref,
    Resolution,
    Unresolved,
    first_unresolved,
    ref_of,
    source_verdict,
    uri_source,
)

__all__ = ["FINETUNEJOB", "MODELEXPORT", "Artifact", "Ref", "Resolution", "Unresolved", "first_unresolved",
           "ref_of", "resolve_ref", "resolve_source", "same_uri"]


def resolve_ref(ref: Ref, body: dict[str, Any] | None) -> Resolution:
    """Resolve one reference against the referenced object's body (None when it does not exist)."""
    kind, name = ref
    return source_verdict(ref, None if body is None else body.get("status") or {},
                          absent=f"{kind} {name!r} does not exist (yet) in this namespace")


def resolve_source(source: Any, fetched: dict[Ref, dict[str, Any] | None]) -> Resolution:
    """Resolve a typed source (uri or reference). ``fetched`` maps each reference to the object found."""
    ref = ref_of(source)
    return uri_source(source) if ref is None else resolve_ref(ref, fetched.get(ref))


def same_uri(a: str | None, b: str | None) -> bool:
    """URIs equal up to a trailing slash."""
    return a is not None and b is not None and a.rstrip("/") == b.rstrip("/")
