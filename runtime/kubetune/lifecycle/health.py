"""kstatus health conditions (Ready, Reconciling, Stalled), derived from an object's phase and reason.

GitOps tools read health from these three conditions (the kstatus conventions of sigs.k8s.io/cli-utils, used by
Flux, kpt and Config Sync; Argo CD through the health checks in ``manifests/argocd``):

- ``Reconciling=True``: kubetune is still working towards what the spec asks for (waiting for inputs, queued, creating
  pods, training, deploying). kstatus reports ``InProgress``.
- ``Stalled=True``: kubetune cannot get there without a change (rejected spec, failed run). kstatus reports ``Failed``.
- ``Ready=True``: the spec is fulfilled (a run succeeded, a service serves). kstatus reports ``Current``.

They sit next to each kind's own conditions and are set from the same verdict: each kind's status derivation
(:mod:`kubetune.lifecycle.finetunejob`, ``modelexport``, ``inferenceservice``) adds them once, and the operator and
``kubetune run`` both write what it derives, so both agree on health.
"""

from __future__ import annotations

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle.conditions import Cond, Verdict

# The phase in which each kind has done what its spec asks for.
DONE_PHASE = {"FineTuneJob": "Succeeded", "ModelExport": "Succeeded", "InferenceService": "Ready"}
FAILED_PHASE = "Failed"
# At rest on purpose, neither working nor failed: the spec asks for no pods (runPolicy.suspend, replicas 0).
AT_REST_REASONS = frozenset({R.SUSPENDED, R.SCALED_TO_ZERO})


def health_conditions(kind: str, phase: str, reason: str, message: str) -> list[Cond]:
    """Ready, Reconciling and Stalled for an object of ``kind`` whose status says ``phase``/``reason``/``message``.

    Exactly one of the three is True, except for an object at rest on purpose (suspended, scaled to zero), which
    has all three False: not ready, but neither working nor failed.
    """
    if phase == DONE_PHASE.get(kind):
        return [Cond(T.READY, True, reason, message), Cond(T.RECONCILING, False, reason, ""),
                Cond(T.STALLED, False, reason, "")]
    if phase == FAILED_PHASE:
        return [Cond(T.READY, False, reason, message), Cond(T.RECONCILING, False, reason, ""),
                Cond(T.STALLED, True, reason, message)]
    if reason in AT_REST_REASONS:
        return [Cond(T.READY, False, reason, message), Cond(T.RECONCILING, False, reason, message),
                Cond(T.STALLED, False, reason, "")]
    return [Cond(T.READY, False, reason, message), Cond(T.RECONCILING, True, reason, message),
            Cond(T.STALLED, False, reason, "")]


def with_health(kind: str, verdict: Verdict) -> list[Cond]:
    """The verdict's conditions followed by the health conditions: what is written for one status decision."""
    return [*verdict.conditions, *health_conditions(kind, verdict.phase, str(verdict.reason), verdict.message)]
