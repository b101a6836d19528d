"""The admin's policy, engine flags, contained URIs and the restricted pod shape: pure checks on rendered children."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.inferenceservice import EngineSpec, InferenceService
from kubetune.uris import UriError
from kubetune_operator.policy import (
    IMAGE_NOT_ALLOWED,
    SERVICE_ACCOUNT_NOT_ALLOWED,
    Policy,
    PolicyError,
    check_children,
    check_engine_args,
    check_runtime_config,
    load_policy,
)
from kubetune_operator.reconcile.finetunejob import runtime_config
from kubetune_operator.render import pods
from kubetune_operator.status.common import transition_events
from tests.builders import make_finetunejob, make_inferenceservice
from tests.support.workloads import SETTINGS, all_children, pod_templates, serving, training

DEFAULT = Policy()


def verdict(children, policy: Policy = DEFAULT, kind: str = "FineTuneJob", requested: str | None = None):
    return check_children(policy, children, SETTINGS.images, SETTINGS.own_service_accounts(kind, requested))


def test_default_policy_allows_what_the_operator_renders_by_itself():
    for name, children in all_children("team-a").items():
        kind = {"export": "ModelExport"}.get(name, "InferenceService" if name.startswith("serving") else
                                             "FineTuneJob")
        assert verdict(children, kind=kind) is None, name


def test_default_policy_refuses_a_named_image_and_service_account():
    assert verdict(training("team-a", "job"), kind="FineTuneJob") is None
    image = training("team-a", "job")
    image[-1]["spec"]["template"]["spec"]["containers"][0]["image"] = "evil/miner:latest"
    reason, message = verdict(image)
    assert reason == IMAGE_NOT_ALLOWED and "spec.image" in message and "evil/miner:latest" in message
    account = serving("team-a", "hf", serviceAccountName="namespace-admin")
    reason, message = verdict(account, kind="InferenceService")
    assert reason == SERVICE_ACCOUNT_NOT_ALLOWED and "'namespace-admin'" in message


def test_a_tenant_cannot_name_the_adapters_sidecar_identity():
    """The operator gives its runtime identity to the adapters sidecar only; named in spec.serviceAccountName it
    would mount that token into the serving container, so it needs the admin's list like any other account."""
    runtime = SETTINGS.runtime_service_account
    named = serving("team-a", "hf", serviceAccountName=runtime)
    reason, message = verdict(named, kind="InferenceService", requested=runtime)
    assert reason == SERVICE_ACCOUNT_NOT_ALLOWED and repr(runtime) in message
    listed = Policy.model_validate({"serviceAccounts": {"allowed": [runtime]}})
    assert verdict(named, listed, kind="InferenceService", requested=runtime) is None
    # naming a kind's own default changes nothing
    assert verdict(training("team-a", "job"), kind="FineTuneJob", requested=runtime) is None


def test_policy_patterns_open_images_and_accounts():
    policy = Policy.model_validate({"images": {"allowed": ["registry.corp/ml/*"]},
                                    "serviceAccounts": {"allowed": ["trainer-*"]}})
    children = training("team-a", "pytorchjob")
    for _, template in pod_templates(children):
        template["spec"]["containers"][0]["image"] = "registry.corp/ml/runtime:2"
        template["spec"]["serviceAccountName"] = "trainer-gpu"
    assert verdict(children, policy) is None
    template["spec"]["containers"][0]["image"] = "registry.corp/other:1"
    assert verdict(children, policy)[0] == IMAGE_NOT_ALLOWED


def test_checkpoint_code_runs_only_when_the_admin_allows_it():
    job = FineTuneJob.model_validate(make_finetunejob("x", model={"uri": "hf://org/m", "trustRemoteCode": True}))
    config = runtime_config(job, "pvc://models/out/x-1/", {})
    assert check_runtime_config(DEFAULT, config)[0] == "RemoteCodeNotAllowed"
    assert check_runtime_config(Policy(allow_trust_remote_code=True), config) is None
    plain = FineTuneJob.model_validate(make_finetunejob("x", model={"uri": "hf://org/m"}))
    assert check_runtime_config(DEFAULT, runtime_config(plain, "pvc://models/out/x-1/", {})) is None


def test_policy_file_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("images: {allowed: [a/*]}\nserviceAccounts: {allowd: []}\n")
    with pytest.raises(PolicyError, match=r"policy.yaml: invalid operator policy: serviceAccounts.allowd"):
        load_policy(path)
    path.write_text("serviceAccounts: {defaults: {Pod: x}}\n")
    with pytest.raises(PolicyError, match="unknown kind"):
        load_policy(path)
    assert load_policy(None) == Policy()


@pytest.mark.parametrize("args", [["--trust-remote-code"], ["--trust_remote_code"], ["--api-key=sk-1"],
                                  ["--allowed-local-media-path", "/"], ["--ssl-keyfile", "/k"], ["--port", "1"],
                                  ["--chat-template=/etc/passwd"], ["--middleware", "x.y"]])
def test_engine_flags_that_change_security_are_refused_by_the_schema_and_the_operator(args):
    with pytest.raises(ValidationError, match="extraArgs may not set"):
        EngineSpec.model_validate({"extraArgs": args})
    reason, message = check_engine_args(DEFAULT, args)
    assert reason == "EngineArgNotAllowed" and "spec.engine.extraArgs[0]" in message


def test_operator_also_refuses_abbreviations_and_admin_additions():
    assert check_engine_args(DEFAULT, ["--trust-remote"])[0] == "EngineArgNotAllowed"
    assert check_engine_args(Policy(denied_engine_flags=("enforce-eager",)), ["--enforce_eager"]) is not None
    safe = ["--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--max-num-seqs=8", "--model-impl", "vllm"]
    assert check_engine_args(DEFAULT, safe) is None
    EngineSpec.model_validate({"extraArgs": safe})


@pytest.mark.parametrize("uri", ["pvc://../etc", "pvc://models/../../x", "pvc://models/a/..", "pvc://Models/x",
                                 "hf://../x", "s3://b/../c"])
def test_escaping_uris_are_refused_by_the_schema(uri):
    with pytest.raises(ValidationError):
        FineTuneJob.model_validate(make_finetunejob("x", model={"uri": uri}))
    with pytest.raises(ValidationError):
        InferenceService.model_validate(make_inferenceservice("x", model={"uri": uri}))


@pytest.mark.parametrize("uri", ["pvc://../etc", "pvc://models/../../x", "pvc://Models/x", "hf://org/.."])
def test_render_refuses_escaping_uris_even_when_stored_before_the_schema(uri):
    with pytest.raises(UriError, match=r"claim|segment"):
        pods.pod_path(uri)
    if uri.startswith("pvc://"):
        with pytest.raises(UriError):
            pods.claims([], [uri])
    assert pods.pod_path("pvc://models/a/..b/c") == "/mnt/pvc/models/a/..b/c"
    assert pods.pod_path("pvc://models/./x") == "/mnt/pvc/models/x"  # '.' stays where it is: normalised away


def test_every_rendered_pod_is_restricted_with_writable_home_and_tmp():
    for name, children in all_children("team-a").items():
        for where, template in pod_templates(children):
            spec = template["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, (name, where)
            for c in spec["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
                mounts = {m["mountPath"] for m in c["volumeMounts"]}
                env = {e["name"]: e.get("value") for e in c["env"]}
                assert {"/tmp", env["HOME"]} <= mounts and env["HF_HOME"].startswith(env["HOME"]), (name, where)


def test_a_conflict_is_a_warning_event_and_keeps_the_object_pending():
    prev = {"phase": "Pending", "reason": "Pending", "conditions": [{"type": "Accepted", "status": "True"}]}
    new = {"phase": "Pending", "reason": "ChildConflict", "message": "Service 'payments' already exists",
           "conditions": [{"type": "Accepted", "status": "False", "reason": "ChildConflict"}]}
    events = transition_events(prev, new)
    assert [(e.type, e.reason) for e in events] == [("Warning", "ChildConflict")]
    assert transition_events(new, new) == []
