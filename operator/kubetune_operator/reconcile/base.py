"""What every reconciler shares: the context (client, settings, clock, locks), fetching references, applying
children and writing status with Events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubetune.lifecycle.inputs import Rejection
from kubetune_operator.kinds import FINETUNEJOB, MODELEXPORT, Resource, resource_of
from kubetune_operator.kube import Kube
from kubetune_operator.meta import controlled_by
from kubetune_operator.policy import Policy, check_children, check_env
from kubetune_operator.resolve import FINETUNEJOB as FTJ_KIND
from kubetune_operator.resolve import Ref
from kubetune_operator.settings import RenderSettings
from kubetune_operator.status.common import status_patch, transition_events

log = logging.getLogger("kubetune.operator")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyedLocks:
    """One lock per object, so two triggers never reconcile the same object at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}

    def __call__(self, kind: str, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((kind, namespace, name), threading.Lock())


@dataclass
class Context:
    kube: Kube
    settings: RenderSettings
    policy: Policy = field(default_factory=Policy)
    now: Callable[[], str] = utc_now
    locks: KeyedLocks = field(default_factory=KeyedLocks)


def fetch_refs(ctx: Context, namespace: str, refs: Iterable[Ref]) -> dict[Ref, dict[str, Any] | None]:
    """The referenced kubetune objects (None for those that do not exist)."""
    out: dict[Ref, dict[str, Any] | None] = {}
    for ref in refs:
        if ref not in out:
            resource = FINETUNEJOB if ref[0] == FTJ_KIND else MODELEXPORT
            out[ref] = ctx.kube.get(resource, namespace, ref[1])
    return out


CHILD_CONFLICT = "ChildConflict"


class Refused(Exception):
    """The operator will not apply these children; ``rejection`` says why (and whether it is final)."""

    def __init__(self, rejection: Rejection):
        super().__init__(rejection.message)
        self.rejection = rejection


def get_owned(ctx: Context, resource: Resource, parent: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The child ``name`` when ``parent`` controls it; None when it is missing or belongs to someone else."""
    found = ctx.kube.get(resource, parent["metadata"]["namespace"], name)
    return found if found is not None and controlled_by(found, parent) else None


def check_ownership(ctx: Context, parent: dict[str, Any], manifests: list[dict[str, Any]]) -> None:
    """Raise Refused (not final) when a child's name is taken by an object ``parent`` does not control.

    Server-side apply with force would otherwise take such an object over: rewrite its spec and add an owner
    reference through which the garbage collector deletes it with the kubetune resource. All names are checked
    before anything is written, so a conflict never leaves half of the children applied.
    """
    for manifest in manifests:
        meta = manifest["metadata"]
        found = ctx.kube.get(resource_of(manifest), meta["namespace"], meta["name"])
        if found is not None and not controlled_by(found, parent):
            owners = [f"{r.get('kind')} {r.get('name')}" for r in found["metadata"].get("ownerReferences") or []
                      if r.get("controller")]
            raise Refused(Rejection(CHILD_CONFLICT, (
                f"{manifest['kind']} {meta['name']!r} already exists and is not controlled by this "
                f"{parent['kind']} (controller: {', '.join(owners) or 'none'}); kubetune leaves it untouched. "
                f"Rename or delete that {manifest['kind']}, or give this {parent['kind']} another name"),
                final=False))


def apply_children(ctx: Context, parent: dict[str, Any], manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Check the admin's policy and child ownership, then server-side apply each child in order; returns the
    applied objects by kind. Raises Refused when the policy forbids a pod or a child's name is taken."""
    requested = (parent.get("spec") or {}).get("serviceAccountName")
    denied = check_children(ctx.policy, manifests, ctx.settings.images,
                            ctx.settings.own_service_accounts(parent["kind"], requested)) or \
        check_env(parent.get("spec") or {}, manifests)
    if denied:
        raise Refused(Rejection(*denied))
    check_ownership(ctx, parent, manifests)
    return {m["kind"]: ctx.kube.apply(m) for m in manifests}


def write_status(ctx: Context, resource: Resource, body: dict[str, Any], new: dict[str, Any],
                 owned: tuple[str, ...], now: str) -> bool:
    """Patch the owned status keys that changed and post Events for transitions. Returns whether it patched."""
    prev = body.get("status") or {}
    patch = status_patch(prev, new, owned)
    if not patch:
        return False
    meta = body["metadata"]
    ctx.kube.patch_status(resource, meta["namespace"], meta["name"], patch)
    for event in transition_events(prev, new):
        ctx.kube.post_event(body, type_=event.type, reason=event.reason, message=event.message, now=now)
    log.info("%s %s/%s: %s", resource.kind, meta["namespace"], meta["name"],
             ", ".join(f"{k}={v}" for k, v in patch.items() if k in ("phase", "reason", "restarts")) or "status")
    return True


def finished(ctx: Context, resource: Resource, body: dict[str, Any]) -> None:
    """A finished run acts on nothing new, but still records that it saw the latest generation."""
    generation = body["metadata"].get("generation")
    if (body.get("status") or {}).get("observedGeneration") != generation:
        meta = body["metadata"]
        ctx.kube.patch_status(resource, meta["namespace"], meta["name"], {"observedGeneration": generation})


def reconcile_run(ctx: Context, resource: Resource, namespace: str, name: str,
                  is_terminal: Callable[[dict[str, Any] | None], bool],
                  reconcile_live: Callable[[Context, dict[str, Any]], None]) -> None:
    """The frame shared by one-shot runs (FineTuneJob, ModelExport): lock the object, skip it when gone or being
    deleted, only record the generation once it finished, else reconcile it."""
    with ctx.locks(resource.kind, namespace, name):
        body = ctx.kube.get(resource, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        if is_terminal(body.get("status")):
            finished(ctx, resource, body)
            return
        reconcile_live(ctx, body)


def parse_error(kind: str, exc: Exception) -> Rejection:
    """A body the API types reject (the CRD should have caught it; an older CRD version may not have)."""
    return Rejection("InvalidSpec", f"{kind} does not match the kubetune API: {exc}")
