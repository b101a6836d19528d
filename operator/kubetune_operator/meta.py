"""Object metadata shared by every render: owner references, labels, output directories (named by the lifecycle),
spec hashes.

Everything here is a pure function of the parent object: no clock, no random names. Re-rendering the same parent
gives byte-identical children, which is what makes server-side apply idempotent.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubetune.lifecycle.outputs import output_uri
from kubetune_operator.kinds import COMPONENT as MANAGER
from kubetune_operator.kinds import MANAGED_BY, QUEUE_LABEL, owner_label


def output_dir(parent: dict[str, Any], output_uri_parent: str) -> str:
    """``<output.uri>/<name>-<uid8>/``: the fresh directory a producer writes, never overwritten."""
    meta = parent["metadata"]
    return output_uri(output_uri_parent, meta["name"], meta.get("uid") or "")


def owner_reference(parent: dict[str, Any]) -> dict[str, Any]:
    """A controller owner reference, so the garbage collector deletes the child with its parent."""
    return {
        "apiVersion": parent["apiVersion"],
        "kind": parent["kind"],
        "name": parent["metadata"]["name"],
        "uid": parent["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controlled_by(obj: dict[str, Any], parent: dict[str, Any]) -> bool:
    """Whether ``obj`` names ``parent`` (by uid) as its controller: only such children may be written."""
    uid = parent["metadata"].get("uid")
    return any(ref.get("controller") and ref.get("uid") == uid
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def child_labels(parent: dict[str, Any], queue_name: str | None = None) -> dict[str, str]:
    """``kubetune.io/<kind>=<name>`` (how the operator finds the child's parent) plus managed-by and Kueue."""
    labels = {owner_label(parent["kind"]): parent["metadata"]["name"], MANAGED_BY: MANAGER}
    if queue_name:
        labels[QUEUE_LABEL] = queue_name
    return labels


def child_metadata(parent: dict[str, Any], name: str, *, queue_name: str | None = None,
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """Metadata of an owned child in the parent's namespace."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": parent["metadata"]["namespace"],
        "labels": child_labels(parent, queue_name),
        "ownerReferences": [owner_reference(parent)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def stable_hash(value: Any, length: int = 16) -> str:
    """A short sha256 of a JSON value with sorted keys (the same value always gives the same hash)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
