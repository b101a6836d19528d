"""Read an InferenceService's Deployment into the lifecycle's ServingState, which its status derives from
(:mod:`kubetune.lifecycle.inferenceservice`)."""

from __future__ import annotations

from typing import Any

from kubetune.lifecycle.inferenceservice import (
    DEPLOYING,
    FAILED,
    PROGRESS_DEADLINE_EXCEEDED,
    READY,
    SCALED,
    ServingState,
)


def observe_deployment(deployment: dict[str, Any] | None) -> ServingState:
    """The Deployment's replicas and conditions (None before it exists: nothing is ready yet)."""
    dep = deployment or {}
    status = dep.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    replicas, ready = int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0)
    wanted = int((dep.get("spec") or {}).get("replicas", 1))
    available = conds.get("Available", {})
    progressing = conds.get("Progressing", {})
    if progressing.get("status") == "False" and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED:
        return ServingState(FAILED, progressing.get("message") or "the Deployment made no progress",
                            PROGRESS_DEADLINE_EXCEEDED, replicas, ready)
    if wanted == 0:
        return ServingState(SCALED, "scaled to zero replicas", replicas=replicas, ready=ready)
    if available.get("status") == "True" and ready > 0:
        return ServingState(READY, f"{ready}/{wanted} replicas ready", replicas=replicas, ready=ready)
    return ServingState(DEPLOYING, available.get("message") or
                        f"{ready}/{wanted} replicas ready; waiting for the model to load", replicas=replicas,
                        ready=ready)
