"""GitOps health: the kstatus conditions (Ready, Reconciling, Stalled) on every phase of the three kinds, the
"queued" status of a job waiting in a Kueue queue, and the Argo CD health check in manifests/argocd run in Lua."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml

from kubetune.lifecycle import runs as L
from kubetune.lifecycle.finetunejob import TrainingObservation, derive_finetunejob_status
from kubetune.lifecycle.health import health_conditions
from kubetune.lifecycle.inferenceservice import ServingObservation, derive_inferenceservice_status
from kubetune.lifecycle.inputs import Rejection
from kubetune.lifecycle.modelexport import ExportObservation, derive_modelexport_status
from kubetune.lifecycle.runs import RunState
from kubetune.lifecycle.sources import Unresolved
from kubetune_operator.status.deployments import observe_deployment
from kubetune_operator.status.launchers import observe_job, observe_pytorchjob

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
T1 = "2026-01-01T00:05:00Z"
KINDS = ("FineTuneJob", "ModelExport", "InferenceService")


def health(status: dict[str, Any]) -> tuple[str, str, str]:
    """(Ready, Reconciling, Stalled) statuses."""
    by_type = {c["type"]: c["status"] for c in status["conditions"]}
    return by_type["Ready"], by_type["Reconciling"], by_type["Stalled"]


def ftj(**kw: Any) -> dict[str, Any]:
    obs = TrainingObservation(**{"generation": 1, "now": T1, "launcher_kind": "Job", "launcher_name": "run", **kw})
    return derive_finetunejob_status({}, obs)


def mexp(**kw: Any) -> dict[str, Any]:
    return derive_modelexport_status({}, ExportObservation(**{"generation": 1, "now": T1, "job_name": "x", **kw}))


def isvc(replicas: int | None = None, ready: int = 0, progressing: str = "True", **kw: Any) -> dict[str, Any]:
    dep = None if replicas is None else {
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready, "conditions": [
            {"type": "Available", "status": "True" if ready else "False"},
            {"type": "Progressing", "status": progressing,
             "reason": "NewReplicaSetAvailable" if progressing == "True" else "ProgressDeadlineExceeded"}]}}
    obs = ServingObservation(**{"generation": 1, "now": T1, "selector": "s", "url": "http://bot:8000/v1",
                                "deployment_name": "bot", "serving": None if dep is None else observe_deployment(dep),
                                **kw})
    return derive_inferenceservice_status({}, obs)


WAITING = Unresolved("WaitingForSource", "waiting for FineTuneJob up", ("FineTuneJob", "up"))
SOURCE_FAILED = Unresolved("SourceFailed", "FineTuneJob up failed", ("FineTuneJob", "up"))
REJECTED = Rejection("InvalidSpec", "spec.extraArgs.foo: unknown key")
IN_PROGRESS, CURRENT, FAILED, AT_REST = ("False", "True", "False"), ("True", "False", "False"), \
    ("False", "False", "True"), ("False", "False", "False")

# Every phase of each kind, from the lifecycle's status derivations (the operator's and `kubetune run`'s), with the
# health a user expects.
PHASES = {
    "ftj-waiting": (ftj(unresolved=WAITING), "Pending", IN_PROGRESS),
    "ftj-pending": (ftj(), "Pending", IN_PROGRESS),
    "ftj-queued": (ftj(launcher=RunState(L.SUSPENDED, queue="gpu")), "Pending", IN_PROGRESS),
    "ftj-running": (ftj(launcher=RunState(L.RUNNING)), "Running", IN_PROGRESS),
    "ftj-restarting": (ftj(launcher=RunState(L.RESTARTING)), "Running", IN_PROGRESS),
    "ftj-suspended": (ftj(launcher=RunState(L.SUSPENDED, queue="gpu"), suspend=True), "Suspended",
                      AT_REST),
    "ftj-succeeded": (ftj(launcher=RunState(L.SUCCEEDED)), "Succeeded", CURRENT),
    "ftj-failed": (ftj(launcher=RunState(L.FAILED, "BackoffLimitExceeded", "3 pods failed")), "Failed",
                   FAILED),
    "ftj-rejected": (ftj(rejection=REJECTED), "Failed", FAILED),
    "ftj-source-failed": (ftj(unresolved=SOURCE_FAILED), "Failed", FAILED),
    "mexp-waiting": (mexp(unresolved=WAITING), "WaitingForSource", IN_PROGRESS),
    "mexp-pending": (mexp(job=RunState(L.CREATED)), "Pending", IN_PROGRESS),
    "mexp-queued": (mexp(job=RunState(L.SUSPENDED, queue="cpu")), "Pending", IN_PROGRESS),
    "mexp-running": (mexp(job=RunState(L.RUNNING)), "Running", IN_PROGRESS),
    "mexp-succeeded": (mexp(job=RunState(L.SUCCEEDED)), "Succeeded", CURRENT),
    "mexp-failed": (mexp(job=RunState(L.FAILED, "BackoffLimitExceeded", "failed")), "Failed", FAILED),
    "isvc-waiting": (isvc(unresolved=WAITING), "WaitingForModel", IN_PROGRESS),
    "isvc-deploying": (isvc(), "Deploying", IN_PROGRESS),
    "isvc-loading": (isvc(replicas=1, ready=0), "Deploying", IN_PROGRESS),
    "isvc-ready": (isvc(replicas=2, ready=2), "Ready", CURRENT),
    "isvc-scaled-to-zero": (isvc(replicas=0), "Deploying", AT_REST),
    "isvc-no-progress": (isvc(replicas=1, progressing="False"), "Failed", FAILED),
    "isvc-rejected": (isvc(rejection=REJECTED), "Failed", FAILED),
}


@pytest.mark.parametrize("case", PHASES)
def test_every_phase_carries_kstatus_conditions(case):
    status, phase, expected = PHASES[case]
    assert status["phase"] == phase
    assert health(status) == expected
    by_type = {c["type"]: c for c in status["conditions"]}
    if expected == IN_PROGRESS:  # says what it is waiting for, in the object's own words
        assert by_type["Reconciling"]["message"] == status["message"] != ""
    if expected == FAILED:
        assert by_type["Stalled"]["reason"] == status["reason"] and by_type["Stalled"]["message"] == status["message"]


@pytest.mark.parametrize("kind", KINDS)
def test_health_conditions_follow_phase_and_reason(kind):
    done = {"FineTuneJob": "Succeeded", "ModelExport": "Succeeded", "InferenceService": "Ready"}[kind]
    statuses = {phase: [c.status for c in health_conditions(kind, phase, "Why", "m")]
                for phase in (done, "Failed", "Pending")}
    assert statuses == {done: [True, False, False], "Failed": [False, False, True], "Pending": [False, True, False]}


def test_health_keeps_transition_times_across_resyncs():
    running = derive_finetunejob_status({}, TrainingObservation(1, "t0", "Job", "run",
                                                                launcher=RunState(L.RUNNING)))
    again = derive_finetunejob_status(running, TrainingObservation(1, "t1", "Job", "run",
                                                                   launcher=RunState(L.RUNNING)))
    assert {c["type"]: c["lastTransitionTime"] for c in again["conditions"]}["Reconciling"] == "t0"


def test_queued_job_says_so_in_plain_words():
    status = ftj(launcher=RunState(L.SUSPENDED, queue="team-a-gpu"))
    assert (status["phase"], status["reason"]) == ("Pending", "Queued")
    assert status["message"].startswith("queued: Job run waits in queue team-a-gpu until there is room")
    running = {c["type"]: c for c in status["conditions"]}["Running"]
    assert (running["status"], running["reason"]) == ("False", "Queued")
    # without a queue, a suspended launcher is just suspended
    assert ftj(launcher=RunState(L.SUSPENDED))["phase"] == "Suspended"
    assert mexp(job=RunState(L.SUSPENDED, queue="cpu"))["reason"] == "Queued"


@pytest.mark.parametrize(("body", "state"), [
    ({"spec": {"suspend": True}}, L.SUSPENDED),
    ({"spec": {"suspend": False}}, L.CREATED),
    ({"spec": {"suspend": True}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}, L.SUCCEEDED),
])
def test_job_asked_to_suspend_is_suspended_before_its_controller_says_so(body, state):
    assert observe_job(body).state == state


def test_suspended_launcher_names_its_kueue_queue():
    labels = {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "team-a-gpu"}}}
    assert observe_job({**labels, "spec": {"suspend": True}}).queue == "team-a-gpu"
    assert observe_pytorchjob({**labels, "spec": {"runPolicy": {"suspend": True}}}).queue == "team-a-gpu"
    assert observe_job({**labels, "spec": {"suspend": False}, "status": {"active": 1}}).queue is None
    assert observe_job({"spec": {"suspend": True}}).queue is None


def test_pytorchjob_asked_to_suspend_is_suspended():
    assert observe_pytorchjob({"spec": {"runPolicy": {"suspend": True}}}).state == L.SUSPENDED
    assert observe_pytorchjob({"spec": {"runPolicy": {}}}).state == L.CREATED


# --- Argo CD --------------------------------------------------------------------------------------------------


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run manifests/argocd/health.lua the way Argo CD does: the object as the global ``obj``, a table back."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)

    def table(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: table(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([table(v) for v in value])
        return value

    lua.globals().obj = table(obj)
    result = lua.execute((ARGOCD / "health.lua").read_text())
    return dict(result.items())


ARGO = {IN_PROGRESS: "Progressing", CURRENT: "Healthy", FAILED: "Degraded", AT_REST: "Suspended"}


@pytest.mark.parametrize("case", PHASES)
def test_argocd_health_at_every_phase(case):
    status, _, expected = PHASES[case]
    got = argocd_health({"metadata": {"name": "x", "generation": 1}, "status": status})
    assert got == {"status": ARGO[expected], "message": status["message"]}


def test_argocd_health_before_the_operator_saw_the_object():
    assert argocd_health({"metadata": {"generation": 1}})["status"] == "Progressing"
    stale = argocd_health({"metadata": {"generation": 2}, "status": PHASES["ftj-succeeded"][0]})
    assert stale == {"status": "Progressing", "message": "waiting for the kubetune operator to observe generation 2"}


def test_argocd_settings_carry_the_health_check_for_each_kind():
    settings = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    script = (ARGOCD / "health.lua").read_text()
    assert settings["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert settings["data"] == {f"resource.customizations.health.kubetune.io_{kind}": script for kind in KINDS}
