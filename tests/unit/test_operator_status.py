"""Status derivation, condition bookkeeping and reference resolution: pure functions, table cases."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.lifecycle import runs as L
from kubetune.lifecycle.conditions import Cond, get_condition, set_condition
from kubetune.lifecycle.finetunejob import TrainingObservation, derive_finetunejob_status
from kubetune.lifecycle.inferenceservice import ServingObservation, derive_inferenceservice_status
from kubetune.lifecycle.inputs import Rejection
from kubetune.lifecycle.modelexport import ExportObservation, derive_modelexport_status
from kubetune_operator.reconcile.inferenceservice import serving_inputs
from kubetune_operator.resolve import Artifact, Unresolved, resolve_ref
from kubetune_operator.status.common import status_patch, transition_events
from kubetune_operator.status.deployments import observe_deployment
from kubetune_operator.status.launchers import observe_job, observe_pytorchjob

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def cond_map(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_set_condition_keeps_transition_time_while_status_holds():
    conds = set_condition([], Cond("Running", True, "Running", "a"), T0, 1)
    conds = set_condition(conds, Cond("Running", True, "Restarting", "b"), T1, 2)
    assert conds == [{"type": "Running", "status": "True", "reason": "Restarting", "message": "b",
                      "lastTransitionTime": T0, "observedGeneration": 2}]
    conds = set_condition(conds, Cond("Running", False, "Succeeded"), T1, 2)
    assert get_condition(conds, "Running")["lastTransitionTime"] == T1


def ptj(*types: str, **status: Any) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": t, "status": "True", "reason": f"PyTorchJob{t}"} for t in types],
                       **status}}


@pytest.mark.parametrize(("body", "state"), [
    (ptj(), L.CREATED),
    (ptj("Created"), L.CREATED),
    (ptj("Created", "Running"), L.RUNNING),
    (ptj("Created", "Restarting"), L.RESTARTING),
    (ptj("Created", "Suspended"), L.SUSPENDED),
    (ptj("Created", "Succeeded"), L.SUCCEEDED),
    (ptj("Created", "Running", "Failed"), L.FAILED),
])
def test_observe_pytorchjob(body, state):
    assert observe_pytorchjob(body).state == state


@pytest.mark.parametrize(("status", "state", "reason", "failures"), [
    ({}, L.CREATED, "Created", 0),
    ({"active": 2, "failed": 1}, L.RUNNING, "Running", 1),
    ({"conditions": [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}]}, L.SUCCEEDED,
     "CompletionsReached", 0),
    ({"failed": 4, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
     L.FAILED, "BackoffLimitExceeded", 4),
    ({"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]}, L.SUSPENDED,
     "JobSuspended", 0),
])
def test_observe_job(status, state, reason, failures):
    seen = observe_job({"status": status})
    assert (seen.state, seen.reason, seen.failures) == (state, reason, failures)


def ftj_obs(**kw: Any) -> TrainingObservation:
    return TrainingObservation(**{"generation": 1, "now": T1, "launcher_kind": "PyTorchJob", "launcher_name": "run",
                                  **kw})


OUTPUT = {"uri": "pvc://m/run-1a2b3c4d/", "artifactType": "lora-adapter"}


@pytest.mark.parametrize(("obs", "phase", "conds"), [
    (ftj_obs(), "Pending", {"Accepted": ("True", "SpecValid"), "InputsReady": ("True", "Resolved"),
                            "Running": ("False", "Pending")}),
    (ftj_obs(launcher=L.RunState(L.RUNNING)), "Running", {"Running": ("True", "Running")}),
    (ftj_obs(launcher=L.RunState(L.SUCCEEDED), output=OUTPUT), "Succeeded",
     {"Running": ("False", "Succeeded"), "Succeeded": ("True", "Succeeded")}),
    (ftj_obs(launcher=L.RunState(L.FAILED, "DeadlineExceeded", "too slow")), "Failed",
     {"Failed": ("True", "DeadlineExceeded")}),
    (ftj_obs(launcher=L.RunState(L.RUNNING), suspend=True), "Suspended",
     {"Suspended": ("True", "Suspended"), "Running": ("False", "Suspended")}),
    (ftj_obs(rejection=Rejection("InvalidExtraArgs", "spec.extraArgs.foo: unknown")), "Failed",
     {"Accepted": ("False", "InvalidExtraArgs")}),
    (ftj_obs(unresolved=Unresolved("WaitingForSource", "waiting", ("FineTuneJob", "up"))), "Pending",
     {"InputsReady": ("False", "WaitingForSource")}),
    (ftj_obs(unresolved=Unresolved("SourceFailed", "up failed", ("FineTuneJob", "up"))), "Failed",
     {"InputsReady": ("False", "SourceFailed"), "Failed": ("True", "SourceFailed")}),
], ids=["pending", "running", "succeeded", "failed", "suspended", "rejected", "waiting", "source-failed"])
def test_finetunejob_status(obs, phase, conds):
    status = derive_finetunejob_status({}, obs)
    assert status["phase"] == phase and status["observedGeneration"] == 1
    assert conds.items() <= cond_map(status).items()
    assert ("output" in status) == (phase == "Succeeded")
    assert ("trainingJob" in status) == (obs.rejection is None and obs.unresolved is None)


def test_finetunejob_restarts_count_each_restart_once():
    running = derive_finetunejob_status({}, ftj_obs(launcher=L.RunState(L.RUNNING)))
    restarting = derive_finetunejob_status(running, ftj_obs(launcher=L.RunState(L.RESTARTING)))
    again = derive_finetunejob_status(restarting, ftj_obs(launcher=L.RunState(L.RESTARTING)))
    back = derive_finetunejob_status(again, ftj_obs(launcher=L.RunState(L.RUNNING)))
    second = derive_finetunejob_status(back, ftj_obs(launcher=L.RunState(L.RESTARTING)))
    assert [s["restarts"] for s in (running, restarting, again, back, second)] == [0, 1, 1, 1, 2]
    assert running["startTime"] == T1 and back["startTime"] == T1
    job = derive_finetunejob_status(second, ftj_obs(launcher=L.RunState(L.RUNNING, failures=5)))
    assert job["restarts"] == 5


def test_resumed_after_suspension():
    suspended = derive_finetunejob_status({}, ftj_obs(launcher=L.RunState(L.RUNNING), suspend=True))
    resumed = derive_finetunejob_status(suspended, ftj_obs(launcher=L.RunState(L.RUNNING)))
    assert cond_map(resumed)["Suspended"] == ("False", "Resumed") and resumed["phase"] == "Running"


def test_status_patch_only_touches_owned_keys_and_deletes_stale_ones():
    prev = {"phase": "Running", "url": "http://x", "progress": {"step": 3}}
    new = {"phase": "Running"}
    assert status_patch(prev, new, ("phase", "url")) == {"url": None}
    assert status_patch(prev, {"phase": "Running", "url": "http://x"}, ("phase", "url")) == {}


def test_transition_events():
    events = transition_events({"phase": "Running", "restarts": 0},
                               {"phase": "Failed", "reason": "BackoffLimitExceeded", "message": "m", "restarts": 1})
    assert [(e.type, e.reason) for e in events] == [("Warning", "BackoffLimitExceeded"), ("Warning", "Restarting")]
    assert transition_events({"phase": "Running"}, {"phase": "Running"}) == []


def upstream(phase: str, *conds: tuple[str, str], output: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": t, "status": s} for t, s in conds]}
    if output:
        status["output"] = output
    return {"status": status}


@pytest.mark.parametrize(("body", "expected"), [
    (None, "SourceNotFound"),
    (upstream("Running", ("Running", "True")), "WaitingForSource"),
    (upstream("Succeeded", ("Succeeded", "True")), "WaitingForSource"),  # no output yet
    (upstream("Failed", ("Failed", "True")), "SourceFailed"),
    (upstream("Succeeded", ("Succeeded", "True"), output={"uri": "pvc://m/up/", "artifactType": "lora-adapter",
                                                          "baseModel": {"uri": "hf://org/base"}}), "pvc://m/up/"),
])
def test_resolve_ref(body, expected):
    found = resolve_ref(("FineTuneJob", "up"), body)
    assert (found.uri if isinstance(found, Artifact) else found.reason) == expected


def adapter(uri: str, base: str | None, kind: str = "lora-adapter") -> Artifact:
    return Artifact(uri=uri, artifact_type=kind, base_model_uri=base, origin=("FineTuneJob", uri))


@pytest.mark.parametrize(("model", "adapters", "expected"), [
    (Artifact("hf://org/base"), [("a", adapter("pvc://m/a/", "hf://org/base"))],
     ("hf://org/base", ["bot", "a"])),
    (adapter("pvc://m/sft/", "hf://org/base"), [], ("hf://org/base", ["bot-base", "bot"])),
    (Artifact("pvc://m/merged/", "full-model", "hf://org/base", origin=("ModelExport", "m")),
     [("a", adapter("pvc://m/a/", "hf://org/base/"))], ("pvc://m/merged/", ["bot", "a"])),
    (Artifact("hf://org/base"), [("a", adapter("pvc://m/a/", "hf://org/other"))], "AdapterBaseMismatch"),
    (Artifact("hf://org/base"), [("a", adapter("pvc://m/a/", "hf://org/base", "full-model"))], "WrongArtifactType"),
], ids=["adapter-on-base", "adapter-as-model", "adapter-on-merged", "mismatch", "not-an-adapter"])
def test_serving_inputs(model, adapters, expected):
    got = serving_inputs("bot", model, adapters)
    if isinstance(expected, str):
        assert isinstance(got, Rejection) and got.reason == expected
    else:
        assert (got.model_uri, got.served_models("vllm")) == expected


@pytest.mark.parametrize(("obs", "phase", "reason"), [
    (ExportObservation(1, T1, "x-export", unresolved=Unresolved("WaitingForSource", "w", ("FineTuneJob", "u"))),
     "WaitingForSource", "WaitingForSource"),
    (ExportObservation(1, T1, "x-export", unresolved=Unresolved("SourceFailed", "f", ("FineTuneJob", "u"))),
     "Failed", "SourceFailed"),
    (ExportObservation(1, T1, "x-export", job=L.RunState(L.CREATED)), "Pending", "Created"),
    (ExportObservation(1, T1, "x-export", job=L.RunState(L.RUNNING)), "Running", "Running"),
    (ExportObservation(1, T1, "x-export", job=L.RunState(L.SUCCEEDED), output={"uri": "u"}),
     "Succeeded", "Succeeded"),
])
def test_modelexport_status(obs, phase, reason):
    status = derive_modelexport_status({}, obs)
    assert (status["phase"], status["reason"]) == (phase, reason)
    assert ("output" in status) == (phase == "Succeeded")


def deployment(replicas: int, ready: int, available: str) -> dict[str, Any]:
    return {"spec": {"replicas": replicas}, "status": {"replicas": replicas, "readyReplicas": ready,
                                                       "conditions": [{"type": "Available", "status": available}]}}


@pytest.mark.parametrize(("dep", "phase", "ready"), [
    (None, "Deploying", "False"),
    (deployment(1, 0, "False"), "Deploying", "False"),
    (deployment(2, 1, "True"), "Ready", "True"),
    (deployment(0, 0, "True"), "Deploying", "False"),
])
def test_inferenceservice_status(dep, phase, ready):
    obs = ServingObservation(1, T1, "kubetune.io/inferenceservice=bot", url="http://bot.ns.svc.cluster.local:8000/v1",
                             served_models=("bot",), resolved_model={"uri": "u"}, deployment_name="bot",
                             serving=observe_deployment(dep))
    status = derive_inferenceservice_status({}, obs)
    assert status["phase"] == phase and cond_map(status)["Ready"][0] == ready
    assert status["url"].endswith(":8000/v1") and status["selector"] == "kubetune.io/inferenceservice=bot"
