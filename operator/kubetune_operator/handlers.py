"""kopf wiring: which events trigger which reconciler. Every handler is one line over a reconciler.

kopf gaps this covers (docs/operator.md, "Status"): status is patched explicitly (returned values would be
pruned by the strict status schemas) with observedGeneration; children report back through label-filtered
watches; consumers are re-triggered through an index of who references whom plus a handler on the referenced
object's ``status.phase`` (kopf has no cross-resource trigger), with a resync timer as the safety net.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf
from pydantic import ValidationError

from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport
from kubetune_operator import kinds
from kubetune_operator.kube import Credentials, KubeError, Transient
from kubetune_operator.reconcile import finetunejob, inferenceservice, modelexport
from kubetune_operator.reconcile.base import Context
from kubetune_operator.settings import OperatorConfig

Reconciler = Callable[[Context, str, str], None]
RECONCILERS: dict[str, Reconciler] = {
    "FineTuneJob": finetunejob.reconcile_finetunejob,
    "ModelExport": modelexport.reconcile_modelexport,
    "InferenceService": inferenceservice.reconcile_inferenceservice,
}
TERMINAL = ("Succeeded", "Failed")
log = logging.getLogger("kubetune.operator")


def backoff(retry: int) -> float:
    """Seconds before retry n: 1, 2, 4, ... capped at one minute."""
    return float(min(2 ** max(retry, 0), 60))


def run_guarded(reconcile: Reconciler, ctx: Context, namespace: str, name: str, retry: int = 0) -> None:
    """Turn API failures into kopf.TemporaryError so kopf retries with backoff (and logs it)."""
    try:
        reconcile(ctx, namespace, name)
    except Transient as exc:
        raise kopf.TemporaryError(str(exc), delay=backoff(retry)) from exc
    except KubeError as exc:
        raise kopf.TemporaryError(f"{exc} (check the operator's RBAC and the cluster's APIs)",
                                  delay=max(backoff(retry), 30.0)) from exc


def connection_info(creds: Credentials) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=creds.server, ca_path=creds.ca_path, insecure=creds.insecure,
                               scheme="Bearer" if creds.token else None, token=creds.token,
                               certificate_path=creds.certificate_path, private_key_path=creds.private_key_path)


def operator_settings(cfg: OperatorConfig) -> kopf.OperatorSettings:
    """kopf settings: kubetune.io-prefixed annotations (never status.kopf, which strict schemas prune), no
    finalizers (children go by ownerReferences), no CRD/namespace scans (no cluster-wide read of those needed)."""
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=kinds.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=kinds.GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{kinds.GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.peering.priority = cfg.priority
    return settings


def _references(kind: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        if kind == "FineTuneJob":
            return finetunejob.references(FineTuneJob.model_validate(body))
        if kind == "ModelExport":
            return modelexport.references(ModelExport.model_validate(body))
        return inferenceservice.references(InferenceService.model_validate(body))
    except ValidationError:
        return []


def build_registry(ctx: Context, cfg: OperatorConfig) -> kopf.OperatorRegistry:
    """All handlers, registered on a fresh registry bound to ``ctx`` (no module-level state)."""
    registry = kopf.OperatorRegistry()
    stats = {"reconciles": 0}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(ctx.kube.credentials())

    @kopf.on.probe(id="reconciles", registry=registry)
    def probe(**_: Any) -> int:
        return stats["reconciles"]

    def reconcile(kind: str, namespace: str, name: str, retry: int = 0) -> None:
        stats["reconciles"] += 1
        run_guarded(RECONCILERS[kind], ctx, namespace, name, retry)

    for parent in kinds.PARENTS:
        _register_parent(registry, parent, reconcile, cfg)
    _register_children(registry, reconcile)
    _register_chaining(registry, reconcile)
    return registry


def _register_parent(registry: kopf.OperatorRegistry, parent: kinds.Resource,
                     reconcile: Callable[..., None], cfg: OperatorConfig) -> None:
    where: dict[str, Any] = {"group": parent.group, "version": parent.version, "plural": parent.plural,
                             "registry": registry}

    @kopf.on.resume(**where, id="reconcile")
    @kopf.on.create(**where, id="reconcile")
    # kopf's callback Protocols spell out every keyword kopf passes; these handlers take the few they use and **_
    @kopf.on.update(**where, id="reconcile", field="spec")  # type: ignore[arg-type]
    def on_change(namespace: str, name: str, retry: int, **_: Any) -> None:
        reconcile(parent.kind, namespace, name, retry)

    def unfinished(status: dict[str, Any], **_: Any) -> bool:
        return status.get("phase") not in TERMINAL or parent.kind == "InferenceService"

    @kopf.timer(**where, id="resync", interval=cfg.resync_seconds,  # type: ignore[arg-type]
                initial_delay=cfg.resync_seconds, when=unfinished)  # type: ignore[arg-type]
    def resync(namespace: str, name: str, retry: int, **_: Any) -> None:
        reconcile(parent.kind, namespace, name, retry)

    @kopf.index(**where, id=f"{parent.plural}_by_ref")  # type: ignore[arg-type]
    def by_ref(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str, str], str]:
        return {(namespace, kind, ref): name for kind, ref in _references(parent.kind, dict(body))}


def _register_children(registry: kopf.OperatorRegistry, reconcile: Callable[..., None]) -> None:
    """A child's change (status from its controller, or its deletion) re-reconciles its parent."""
    watches = ((kinds.PYTORCHJOB, "FineTuneJob"), (kinds.JOB, "FineTuneJob"), (kinds.JOB, "ModelExport"),
               (kinds.DEPLOYMENT, "InferenceService"))
    for child, parent_kind in watches:
        label = kinds.owner_label(parent_kind)

        def on_child(namespace: str, labels: dict[str, str], parent_kind: str = parent_kind, label: str = label,
                     **_: Any) -> None:
            try:
                reconcile(parent_kind, namespace, labels[label])
            except kopf.TemporaryError as exc:  # event handlers are not retried; the resync timer catches up
                log.warning("reconcile %s %s/%s after a child event: %s", parent_kind, namespace, labels[label], exc)

        kopf.on.event(child.group or None, child.version, child.plural, labels={label: kopf.PRESENT},
                      id=f"{child.plural}-{parent_kind.lower()}", registry=registry)(on_child)  # type: ignore[arg-type]


def _register_chaining(registry: kopf.OperatorRegistry, reconcile: Callable[..., None]) -> None:
    """When a FineTuneJob or ModelExport changes phase, or a FineTuneJob's scores change, reconcile everything
    that references it."""
    consumers = (("FineTuneJob", "finetunejobs_by_ref"), ("ModelExport", "modelexports_by_ref"),
                 ("InferenceService", "inferenceservices_by_ref"))
    for source in (kinds.FINETUNEJOB, kinds.MODELEXPORT):

        def on_phase(namespace: str, name: str, source_kind: str = source.kind, **kwargs: Any) -> None:
            key = (namespace, source_kind, name)
            for consumer_kind, index_name in consumers:
                index = kwargs[index_name]
                for consumer in list(index[key]) if key in index else []:
                    reconcile(consumer_kind, namespace, consumer)

        kopf.on.field(source.group, source.version, source.plural, field="status.phase", id="chain",
                      registry=registry)(on_phase)  # type: ignore[arg-type]
        if source is kinds.FINETUNEJOB:  # scores may arrive after Succeeded: exports gated on them re-check
            kopf.on.field(source.group, source.version, source.plural, field="status.evaluation",
                          id="chain-evaluation", registry=registry)(on_phase)  # type: ignore[arg-type]
