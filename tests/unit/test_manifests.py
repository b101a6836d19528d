"""manifests/ as shipped: CRD copies match crds/, the kustomization is complete, the operator Deployment is locked
down, and its RBAC never touches Secrets or deletes anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from kubetune_operator.cli import add_arguments, config_from_args

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def test_crd_copies_match_the_generated_crds():
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        copy = MANIFESTS / "crds" / path.name
        assert copy.is_file() and copy.read_text() == path.read_text(), f"{copy}: run `make crds`"


def test_kustomization_lists_every_operator_manifest():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MANIFESTS / resource).is_file(), resource
    assert {"namespace.yaml", "rbac-operator.yaml", "operator.yaml"} <= set(kustomization["resources"])


def test_operator_deployment_is_locked_down():
    (deployment,) = docs("operator.yaml")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kubetune-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert any(a.startswith("--liveness=http://0.0.0.0:8080/healthz") for a in container["args"])


def test_operator_rbac_never_reads_secrets_or_deletes():
    role = next(d for d in docs("rbac-operator.yaml") if d["kind"] == "ClusterRole")
    for rule in role["rules"]:
        assert "secrets" not in rule["resources"] and "*" not in rule["resources"]
        assert not {"delete", "deletecollection", "*", "escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_deployment_args_parse_into_the_operator_config(tmp_path):
    import argparse

    (deployment,) = docs("operator.yaml")
    pod = deployment["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[0] == "operator"
    # the policy file is the shipped ConfigMap, mounted where --policy points
    (policy_map,) = docs("policy.yaml")
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "policy")
    volume = next(v for v in pod["volumes"] if v["name"] == "policy")
    assert volume["configMap"]["name"] == policy_map["metadata"]["name"]
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy_map["data"]["policy.yaml"])
    local = [a.replace(f"{mount['mountPath']}/policy.yaml", str(policy_file)) for a in args[1:]]
    assert local != args[1:]
    parser = argparse.ArgumentParser()
    add_arguments(parser, "operator")
    cfg = config_from_args(parser.parse_args(local))
    assert cfg.standalone and cfg.clusterwide and cfg.liveness == "http://0.0.0.0:8080/healthz"
    assert cfg.render.runtime_image == "ghcr.io/kubetune/kubetune-runtime:0.1.0"
    # safe defaults: no extra image or ServiceAccount, the runtime identity for runs, none for serving
    assert cfg.policy.images.allowed == () and cfg.policy.service_accounts.allowed == ()
    assert cfg.render.service_account("FineTuneJob") == "kubetune-runtime"
    assert cfg.render.service_account("InferenceService") is None and cfg.render.run_as_user == 65532


def test_tenant_role_is_limited_to_the_kubetune_kinds():
    roles = {d["metadata"]["name"]: d for d in docs("rbac-tenant.yaml")}
    edit = roles["kubetune-edit"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    for rule in edit["rules"]:
        assert rule["apiGroups"] == ["kubetune.io"] and not any(r.endswith("/status") for r in rule["resources"])


def test_kubetune_operator_help():
    result = subprocess.run([sys.executable, "-m", "kubetune.cli.main", "operator", "--help"], capture_output=True,
                            text=True, check=True)
    assert "--namespace" in result.stdout and "--peering" in result.stdout and "--liveness" in result.stdout
