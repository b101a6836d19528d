"""An InferenceService's status from its acceptance, its resolved model and its servers.

The operator observes the servers through their Deployment, ``kubetune run`` through the server it runs in the
foreground; both describe what they see as a :class:`ServingState` and derive the status here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import InferenceServicePhase as P
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle.conditions import Cond, Verdict, apply_conditions
from kubetune.lifecycle.health import with_health
from kubetune.lifecycle.inputs import ACCEPTED, Rejection, input_status
from kubetune.lifecycle.sources import Unresolved

KIND = "InferenceService"
OWNED = ("observedGeneration", "phase", "reason", "message", "conditions", "url", "servedModels", "replicas",
         "readyReplicas", "selector", "resolvedModel", "resolvedAdapters", "deployment")
MODEL_RESOLVED = Cond(T.MODEL_RESOLVED, True, R.RESOLVED, "model resolved")
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"

# where the servers are
DEPLOYING, READY, SCALED, FAILED, STOPPED = "Deploying", "Ready", "ScaledToZero", "Failed", "Stopped"


@dataclass(frozen=True)
class ServingState:
    """The servers as the executor sees them.

    Attributes:
        state: Deploying (loading), Ready (answering), ScaledToZero (no replicas wanted), Failed (cannot come up),
            or Stopped (a local server that was stopped).
        message: what people read.
        reason: why it failed (ProgressDeadlineExceeded in the cluster, Failed locally).
        replicas, ready: the replicas running and ready.
    """

    state: str
    message: str
    reason: str = R.FAILED
    replicas: int = 0
    ready: int = 0


def _serving_verdict(serving: ServingState) -> Verdict:
    msg = serving.message
    if serving.state == FAILED:
        return Verdict(P.FAILED, serving.reason, msg, [Cond(T.DEPLOYMENT_AVAILABLE, False, serving.reason, msg),
                                                       Cond(T.READY, False, serving.reason, msg)])
    if serving.state == SCALED:
        return Verdict(P.DEPLOYING, R.SCALED_TO_ZERO, msg, [Cond(T.DEPLOYMENT_AVAILABLE, False, R.SCALED_TO_ZERO, msg),
                                                          Cond(T.READY, False, R.SCALED_TO_ZERO, msg)])
    if serving.state == READY:
        return Verdict(P.READY, R.READY, msg, [Cond(T.DEPLOYMENT_AVAILABLE, True, R.MINIMUM_REPLICAS_AVAILABLE, msg),
                                               Cond(T.READY, True, R.READY, msg)])
    waiting = R.NOT_READY if serving.state == STOPPED else R.DEPLOYING
    return Verdict(P.PENDING if serving.state == STOPPED else P.DEPLOYING, waiting, msg,
                   [Cond(T.DEPLOYMENT_AVAILABLE, False, R.MINIMUM_REPLICAS_UNAVAILABLE, msg),
                    Cond(T.READY, False, waiting, msg)])


@dataclass(frozen=True)
class ServingObservation:
    """Everything the status depends on, gathered by the executor.

    Attributes:
        generation, now: the object's generation and the current time (RFC 3339).
        selector: the label selector of its pods (the scale subresource's); None locally.
        rejection, unresolved: why it cannot serve (yet).
        url: the OpenAI base URL.
        served_models: the model names the server answers to.
        resolved_model, resolved_adapters: what the model and adapters resolved to.
        deployment_name: the Deployment (cluster only).
        serving: the servers, None before any exists.
    """

    generation: int
    now: str
    selector: str | None = None
    rejection: Rejection | None = None
    unresolved: Unresolved | None = None
    url: str | None = None
    served_models: tuple[str, ...] = ()
    resolved_model: dict[str, Any] | None = None
    resolved_adapters: tuple[dict[str, str], ...] = ()
    deployment_name: str | None = None
    serving: ServingState | None = None


def derive_inferenceservice_status(prev: dict[str, Any] | None, obs: ServingObservation) -> dict[str, Any]:
    """The derived part of the next status (the keys in :data:`OWNED`)."""
    prev = prev or {}
    serving = obs.serving or ServingState(DEPLOYING, "0/1 replicas ready; waiting for the model to load")
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "selector": obs.selector,
        "replicas": serving.replicas if obs.serving else 0,
        "readyReplicas": serving.ready if obs.serving else 0,
    }
    verdict = input_status(KIND, obs.rejection, obs.unresolved)
    if verdict is None:
        served = _serving_verdict(serving)
        verdict = Verdict(served.phase, served.reason, served.message, [ACCEPTED, MODEL_RESOLVED, *served.conditions])
        status.update(url=obs.url, servedModels=list(obs.served_models) or None, deployment=obs.deployment_name,
                      resolvedModel=obs.resolved_model)
        if obs.resolved_adapters:
            status["resolvedAdapters"] = list(obs.resolved_adapters)
    conditions = apply_conditions(prev.get("conditions"), with_health(KIND, verdict), obs.now, obs.generation)
    status.update(phase=verdict.phase, reason=verdict.reason, message=verdict.message, conditions=conditions)
    return {k: v for k, v in status.items() if v is not None}
