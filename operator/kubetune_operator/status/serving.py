"""InferenceService status from its acceptance, its resolved model and its Deployment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import InferenceServicePhase as P
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle.conditions import Cond, apply_conditions
from kubetune.lifecycle.health import with_health
from kubetune.lifecycle.inputs import ACCEPTED, unresolved_status
from kubetune_operator.resolve import Unresolved
from kubetune_operator.status.common import Rejection

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class ServingObservation:
    generation: int
    now: str
    selector: str
    rejection: Rejection | None = None
    unresolved: Unresolved | None = None
    url: str | None = None
    served_models: tuple[str, ...] = ()
    resolved_model: dict[str, Any] | None = None
    resolved_adapters: tuple[dict[str, str], ...] = ()
    deployment_name: str | None = None
    deployment: dict[str, Any] | None = None  # the Deployment as observed, None before it exists


def _deployment_conditions(obs: ServingObservation) -> tuple[str, list[Cond], str, str]:
    dep = obs.deployment or {}
    status = dep.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    ready = int(status.get("readyReplicas") or 0)
    wanted = int((dep.get("spec") or {}).get("replicas", 1))
    available = conds.get("Available", {})
    progressing = conds.get("Progressing", {})
    if progressing.get("status") == "False" and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED:
        msg = progressing.get("message") or "the Deployment made no progress"
        return P.FAILED, [Cond(T.DEPLOYMENT_AVAILABLE, False, PROGRESS_DEADLINE_EXCEEDED, msg),
                          Cond(T.READY, False, PROGRESS_DEADLINE_EXCEEDED, msg)], PROGRESS_DEADLINE_EXCEEDED, msg
    if wanted == 0:
        msg = "scaled to zero replicas"
        return P.DEPLOYING, [Cond(T.DEPLOYMENT_AVAILABLE, False, R.SCALED_TO_ZERO, msg),
                             Cond(T.READY, False, R.SCALED_TO_ZERO, msg)], R.SCALED_TO_ZERO, msg
    if available.get("status") == "True" and ready > 0:
        msg = f"{ready}/{wanted} replicas ready"
        return P.READY, [Cond(T.DEPLOYMENT_AVAILABLE, True, R.MINIMUM_REPLICAS_AVAILABLE, msg),
                         Cond(T.READY, True, R.READY, msg)], R.READY, msg
    msg = available.get("message") or f"{ready}/{wanted} replicas ready; waiting for the model to load"
    return P.DEPLOYING, [Cond(T.DEPLOYMENT_AVAILABLE, False, R.MINIMUM_REPLICAS_UNAVAILABLE, msg),
                         Cond(T.READY, False, R.DEPLOYING, msg)], R.DEPLOYING, msg


def derive_inferenceservice_status(prev: dict[str, Any] | None, obs: ServingObservation) -> dict[str, Any]:
    prev = prev or {}
    phase: str
    dep_status = (obs.deployment or {}).get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "selector": obs.selector,
        "replicas": int(dep_status.get("replicas") or 0),
        "readyReplicas": int(dep_status.get("readyReplicas") or 0),
    }
    if obs.rejection is not None:
        conds = [Cond(T.ACCEPTED, False, obs.rejection.reason, obs.rejection.message),
                 Cond(T.READY, False, obs.rejection.reason, obs.rejection.message)]
        phase = P.FAILED if obs.rejection.final else P.PENDING
        reason, message = obs.rejection.reason, obs.rejection.message
    elif obs.unresolved is not None:
        waiting = unresolved_status("InferenceService", obs.unresolved)
        conds, phase, reason, message = waiting.conditions, waiting.phase, waiting.reason, waiting.message
    else:
        conds = [ACCEPTED, Cond(T.MODEL_RESOLVED, True, R.RESOLVED, "model resolved")]
        phase, dep_conds, reason, message = _deployment_conditions(obs)
        conds += dep_conds
        status.update(url=obs.url, servedModels=list(obs.served_models), deployment=obs.deployment_name,
                      resolvedModel=obs.resolved_model)
        if obs.resolved_adapters:
            status["resolvedAdapters"] = list(obs.resolved_adapters)
    conds = with_health("InferenceService", phase, reason, message, conds)
    status.update(phase=phase, reason=reason, message=message,
                  conditions=apply_conditions(prev.get("conditions"), conds, obs.now, obs.generation))
    return {k: v for k, v in status.items() if v is not None}
