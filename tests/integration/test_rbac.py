"""What each kubetune identity may do, checked against the RBAC shipped in manifests/ on the real apiserver.

Data-driven: SUBJECTS names an identity (the manifest that defines it and its ServiceAccount); ACCESS lists
(subject, verb, resource, subresource, where, allowed) rows checked with `kubectl auth can-i --as=...`. New
identities (the operator) add a Subject and rows; nothing else changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.builders import make_finetunejob

pytestmark = pytest.mark.cluster

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
RBAC_KINDS = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


@dataclass(frozen=True)
class Subject:
    manifest: str  # file under manifests/
    serviceaccount: str
    namespaced: bool  # True: the file has no namespaces and is applied into the test namespace


SUBJECTS = {
    "runtime": Subject("rbac-runtime.yaml", "kubetune-runtime", namespaced=True),
    "operator": Subject("rbac-operator.yaml", "kubetune-operator", namespaced=False),
}

# (subject, verb, resource, subresource, where: "own" namespace or "other", allowed)
ACCESS = [
    ("runtime", "patch", "finetunejobs.kubetune.io", "status", "own", True),
    ("runtime", "get", "finetunejobs.kubetune.io", "status", "own", True),
    ("runtime", "patch", "finetunejobs.kubetune.io", "status", "other", False),
    ("runtime", "patch", "finetunejobs.kubetune.io", "", "own", False),
    ("runtime", "delete", "finetunejobs.kubetune.io", "", "own", False),
    ("runtime", "create", "finetunejobs.kubetune.io", "", "own", False),
    ("runtime", "patch", "modelexports.kubetune.io", "status", "own", False),
    # the adapters sidecar of a vLLM InferenceService reports loadedAdapters; it cannot change the spec
    ("runtime", "patch", "inferenceservices.kubetune.io", "status", "own", True),
    ("runtime", "patch", "inferenceservices.kubetune.io", "", "own", False),
    ("runtime", "get", "secrets", "", "own", False),
    ("runtime", "list", "secrets", "", "own", False),
    ("runtime", "create", "pods", "", "own", False),
    # The operator: cluster-wide on what it reconciles, nothing else; never Secrets, never deletes.
    *[("operator", verb, f"{kind}.kubetune.io", "", where, True)
      for kind in ("finetunejobs", "modelexports", "inferenceservices")
      for verb in ("get", "list", "watch", "patch") for where in ("own", "other")],
    *[("operator", verb, f"{kind}.kubetune.io", "status", "other", True)
      for kind in ("finetunejobs", "modelexports", "inferenceservices") for verb in ("get", "patch")],
    *[("operator", verb, resource, "", "other", True)
      for resource in ("pytorchjobs.kubeflow.org", "jobs.batch", "deployments.apps")
      for verb in ("get", "list", "watch", "create", "patch")],
    *[("operator", verb, resource, "", "other", True)
      for resource in ("configmaps", "services") for verb in ("get", "create", "patch")],
    ("operator", "create", "events", "", "other", True),
    ("operator", "get", "secrets", "", "own", False),
    ("operator", "list", "secrets", "", "other", False),
    ("operator", "watch", "secrets", "", "other", False),
    ("operator", "delete", "namespaces", "", "own", False),
    ("operator", "create", "pods", "", "other", False),
    ("operator", "create", "finetunejobs.kubetune.io", "", "other", False),
    ("operator", "update", "finetunejobs.kubetune.io", "", "other", False),
    ("operator", "delete", "finetunejobs.kubetune.io", "", "other", False),
    ("operator", "delete", "pytorchjobs.kubeflow.org", "", "other", False),
    ("operator", "delete", "deployments.apps", "", "other", False),
    ("operator", "delete", "configmaps", "", "other", False),
    ("operator", "list", "configmaps", "", "other", False),
    ("operator", "create", "roles.rbac.authorization.k8s.io", "", "other", False),
    ("operator", "create", "rolebindings.rbac.authorization.k8s.io", "", "other", False),
    ("operator", "update", "customresourcedefinitions.apiextensions.k8s.io", "", "own", False),
    ("operator", "create", "serviceaccounts", "token", "other", False),
]


def rbac_documents(subject: Subject) -> list[dict]:
    docs = yaml.safe_load_all((MANIFESTS / subject.manifest).read_text())
    return [d for d in docs if isinstance(d, dict) and d.get("kind") in RBAC_KINDS]


def username(subject: Subject, namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{subject.serviceaccount}"


@pytest.fixture(scope="module")
def installed(cluster):
    """Apply every subject's RBAC; returns {subject: namespace its ServiceAccount lives in}."""
    where = {}
    for key, subject in SUBJECTS.items():
        ns = cluster.create_namespace(f"rbac-{key}")
        cluster.create_namespace(f"rbac-{key}-other")
        docs = rbac_documents(subject)
        sa_ns = ns if subject.namespaced else next(d["metadata"]["namespace"] for d in docs
                                                   if d["kind"] == "ServiceAccount")
        if subject.namespaced:
            cluster.apply(docs, "-n", ns)
        else:  # cluster-wide identity: its ServiceAccount lives in its own namespace
            cluster.create_namespace(sa_ns)
            cluster.apply(docs)
        where[key] = sa_ns
    yield where
    for key in SUBJECTS:
        cluster.kubectl("delete", "namespace", f"rbac-{key}", f"rbac-{key}-other", "--wait=false", check=False)


def test_every_subject_has_its_manifest_and_rows():
    for key, subject in SUBJECTS.items():
        assert (MANIFESTS / subject.manifest).is_file(), subject.manifest
        assert any(row[0] == key for row in ACCESS), f"no ACCESS rows for {key}"


@pytest.mark.parametrize(("key", "verb", "resource", "sub", "where", "allowed"), ACCESS,
                         ids=[f"{r[0]}-{r[1]}-{r[2]}{'/' + r[3] if r[3] else ''}-{r[4]}" for r in ACCESS])
def test_can_i(cluster, installed, key, verb, resource, sub, where, allowed):
    sa_ns = installed[key]
    target = f"rbac-{key}" if where == "own" else f"rbac-{key}-other"
    args = ["auth", "can-i", verb, resource, "-n", target]
    if sub:
        args.append(f"--subresource={sub}")
    result = cluster.kubectl(*args, as_user=username(SUBJECTS[key], sa_ns), check=False)
    assert result.stdout.strip() == ("yes" if allowed else "no"), (result.stdout, result.stderr)


def test_runtime_identity_patches_status_but_cannot_delete_or_read_secrets(cluster, installed):
    """Beyond can-i: real requests with a real ServiceAccount token (TokenRequest), not impersonation."""
    ns = installed["runtime"]
    cluster.apply({**make_finetunejob(), "metadata": {"name": "job", "namespace": ns}})
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": ns},
                   "stringData": {"token": "x"}})
    config = cluster.serviceaccount_kubeconfig(ns, SUBJECTS["runtime"].serviceaccount)
    patch = {"status": {"phase": "Running", "progress": {"step": 7, "totalSteps": 10, "percent": 70}}}
    cluster.kubectl("patch", "finetunejob.kubetune.io", "job", "--subresource=status", "--type=merge",
                    "-p", json.dumps(patch), kubeconfig_path=config)
    assert cluster.get("finetunejob.kubetune.io", "job", ns)["status"]["progress"]["step"] == 7
    for denied in (["delete", "finetunejob.kubetune.io", "job"], ["get", "secret", "hf-token"],
                   ["patch", "finetunejob.kubetune.io", "job", "--type=merge", "-p", '{"spec":{"queueName":"q"}}']):
        result = cluster.kubectl(*denied, kubeconfig_path=config, check=False)
        assert result.returncode != 0 and "Forbidden" in result.stderr, (denied, result.stderr)
    assert cluster.get("finetunejob.kubetune.io", "job", ns)["metadata"]["name"] == "job"


def test_impersonating_kubeconfig_acts_as_the_serviceaccount(cluster, installed):
    ns = installed["runtime"]
    config = cluster.impersonating_kubeconfig(ns, SUBJECTS["runtime"].serviceaccount)
    who = json.loads(cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig_path=config).stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:kubetune-runtime"
    assert f"system:serviceaccounts:{ns}" in who["status"]["userInfo"]["groups"]
    denied = cluster.kubectl("get", "secrets", kubeconfig_path=config, check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
