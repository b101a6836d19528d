"""Multi-tenant safety on a real apiserver: the operator never adopts objects it does not own, a tenant limited to
the kubetune kinds cannot choose images, ServiceAccounts or security-relevant engine flags, every rendered pod passes
the restricted Pod Security Standard, and a child the apiserver rejects fails the resource visibly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.builders import make_finetunejob, make_inferenceservice
from tests.support.operator import condition_of, dig, get_json, install_runtime_identity, phase_of, wait_for
from tests.support.workloads import all_children, pod_from_template, pod_templates

pytestmark = pytest.mark.cluster

FTJ, ISVC = "finetunejobs.kubetune.io", "inferenceservices.kubetune.io"
PTJ, JOB, DEPLOY = "pytorchjobs.kubeflow.org", "jobs.batch", "deployments.apps"


def in_ns(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "namespace": namespace}}


def accepted(cluster, resource: str, name: str, namespace: str) -> dict[str, Any] | None:
    cond = condition_of(get_json(cluster, resource, name, namespace), "Accepted")
    return cond if cond and cond.get("status") == "False" else None


def events_for(cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e for e in items if dig(e, "involvedObject", "name") == name]


def untouched(obj: dict[str, Any]) -> dict[str, Any]:
    """What a takeover would change: everything but the apiserver's bookkeeping of reads."""
    return {"metadata": {k: obj["metadata"].get(k) for k in ("resourceVersion", "ownerReferences", "labels", "uid")},
            "spec": obj.get("spec"), "data": obj.get("data")}


def test_a_taken_child_name_is_reported_and_the_users_objects_survive(cluster, operator, namespace):
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "payments", "namespace": namespace},
               "spec": {"selector": {"app": "payments"}, "ports": [{"port": 443, "targetPort": 8443}]}}
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "payments-serve-config", "namespace": namespace}, "data": {"owner": "billing"}}
    cluster.apply([service, config])
    before = {kind: untouched(get_json(cluster, kind, name, namespace))
              for kind, name in (("service", "payments"), ("configmap", "payments-serve-config"))}

    cluster.apply(in_ns(make_inferenceservice("payments", model={"uri": "pvc://models/merged/"}), namespace))
    cond = wait_for(lambda: accepted(cluster, ISVC, "payments", namespace), what="Accepted=False")
    assert cond["reason"] == "ChildConflict" and "ConfigMap 'payments-serve-config'" in cond["message"]
    assert phase_of(cluster, ISVC, "payments", namespace) == "Pending"
    event = wait_for(lambda: [e for e in events_for(cluster, namespace, "payments") if e["reason"] == "ChildConflict"],
                     what="ChildConflict Event")[0]
    assert event["type"] == "Warning" and event["involvedObject"]["kind"] == "InferenceService"
    assert get_json(cluster, DEPLOY, "payments", namespace) is None  # nothing half-applied

    # foreground deletion returns only after the garbage collector removed every dependent of the resource
    cluster.kubectl("delete", ISVC, "payments", "-n", namespace, "--cascade=foreground", "--timeout=60s")
    after = {kind: untouched(get_json(cluster, kind, name, namespace) or {"metadata": {}})
             for kind, name in (("service", "payments"), ("configmap", "payments-serve-config"))}
    assert after == before


def test_a_run_waits_while_its_child_name_is_taken_and_starts_once_it_is_free(cluster, operator, namespace):
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "data": {"mine": "yes"},
                   "metadata": {"name": "ledger-train-config", "namespace": namespace}})
    cluster.apply(in_ns(make_finetunejob("ledger", output={"uri": "pvc://models/out/"}), namespace))
    cond = wait_for(lambda: accepted(cluster, FTJ, "ledger", namespace), what="Accepted=False")
    assert cond["reason"] == "ChildConflict" and "not controlled by this FineTuneJob" in cond["message"]
    assert phase_of(cluster, FTJ, "ledger", namespace) == "Pending"
    assert get_json(cluster, "configmap", "ledger-train-config", namespace)["data"] == {"mine": "yes"}
    assert get_json(cluster, PTJ, "ledger", namespace) is None

    cluster.kubectl("delete", "configmap", "ledger-train-config", "-n", namespace)
    wait_for(lambda: get_json(cluster, PTJ, "ledger", namespace), timeout_s=120, what="PyTorchJob after the resync")
    assert dig(condition_of(get_json(cluster, FTJ, "ledger", namespace), "Accepted"), "status") == "True"


def test_a_tenant_cannot_choose_the_image_service_account_or_security_flags(cluster, operator, namespace):
    cluster.kubectl("create", "rolebinding", "alice-kubetune", "-n", namespace, "--clusterrole=kubetune-edit",
                    "--user=alice")
    cluster.kubectl("create", "serviceaccount", "namespace-admin", "-n", namespace)
    install_runtime_identity(cluster, namespace)
    for question in (("create", "jobs.batch"), ("create", "pods"), ("create", "deployments.apps"),
                     ("patch", "finetunejobs.kubetune.io", "--subresource=status")):
        answer = cluster.kubectl("auth", "can-i", *question, "-n", namespace, as_user="alice", check=False)
        assert answer.stdout.strip() == "no", question
    allowed = cluster.kubectl("auth", "can-i", "create", "finetunejobs.kubetune.io", "-n", namespace,
                              as_user="alice", check=False)
    assert allowed.stdout.strip() == "yes"

    out = {"uri": "pvc://models/out/"}
    cluster.apply([in_ns(make_finetunejob("miner", launcher="job", image="evil/miner:latest", output=out), namespace),
                   in_ns(make_finetunejob("admin", serviceAccountName="namespace-admin", output=out), namespace),
                   in_ns(make_finetunejob("code", model={"uri": "hf://org/m", "trustRemoteCode": True},
                                          output=out), namespace),
                   in_ns(make_inferenceservice("chat", model={"uri": "pvc://models/m/"}, image="evil/server:1"),
                         namespace)], as_user="alice")
    for resource, name, reason in ((FTJ, "miner", "ImageNotAllowed"), (FTJ, "admin", "ServiceAccountNotAllowed"),
                                   (FTJ, "code", "RemoteCodeNotAllowed"), (ISVC, "chat", "ImageNotAllowed")):
        cond = wait_for(lambda resource=resource, name=name: accepted(cluster, resource, name, namespace),
                        what=f"{name} refused")
        assert cond["reason"] == reason, cond
        assert phase_of(cluster, resource, name, namespace) == "Failed"
    for resource, name in ((JOB, "miner"), (PTJ, "admin"), (PTJ, "code"), (DEPLOY, "chat")):
        assert get_json(cluster, resource, name, namespace) is None

    flags = in_ns(make_inferenceservice("remote", engine={"backend": "hf", "extraArgs": ["--trust-remote-code"]}),
                  namespace)
    refused = cluster.apply(flags, as_user="alice", check=False)
    assert refused.returncode != 0 and "extraArgs may not set" in refused.stderr


def test_every_rendered_pod_is_admitted_where_restricted_is_enforced(cluster, namespace):
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    install_runtime_identity(cluster, namespace)
    wait_for(lambda: get_json(cluster, "serviceaccount", "default", namespace), what="default ServiceAccount")
    admitted = []
    for name, children in all_children(namespace).items():
        for index, (_, template) in enumerate(pod_templates(children)):
            pod = pod_from_template(f"{name}-{index}", namespace, template)
            result = cluster.apply(pod, check=False)
            assert result.returncode == 0 and "violate" not in result.stderr, (name, result.stderr)
            admitted.append(pod["metadata"]["name"])
    assert len(admitted) == 7  # PyTorchJob Master + Worker, indexed Job, export Job, hf, vLLM, vLLM with adapters

    (_, template), *_ = pod_templates(all_children(namespace)["export"])
    template["spec"].pop("securityContext")
    for container in template["spec"]["containers"]:
        container.pop("securityContext")
    refused = cluster.apply(pod_from_template("unrestricted", namespace, template), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr


def test_a_child_the_apiserver_rejects_fails_the_resource_with_its_message(cluster, operator, namespace):
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "Exists"}], "weight": 3}]}}}
    cluster.apply(in_ns(make_inferenceservice("placed", model={"uri": "pvc://models/m/"}, affinity=affinity),
                        namespace))
    cluster.apply(in_ns(make_finetunejob("placed", launcher="job", affinity=affinity,
                                         output={"uri": "pvc://models/out/"}), namespace))
    for resource in (ISVC, FTJ):
        wait_for(lambda resource=resource: phase_of(cluster, resource, "placed", namespace) == "Failed",
                 what=f"{resource} Failed")
        cond = condition_of(get_json(cluster, resource, "placed", namespace), "Accepted")
        assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec"), cond
        assert "weight" in cond["message"], cond["message"]  # the apiserver's own words name the field
