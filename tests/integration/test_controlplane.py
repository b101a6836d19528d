"""The test control plane is a real one: versioned binaries, RBAC on, controllers running, PyTorchJob CRD served."""

from __future__ import annotations

import json

import pytest

from tests.builders import make_finetunejob

pytestmark = pytest.mark.cluster


def test_server_version_and_rbac(cluster):
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"] == "v1.36.3"
    nobody = cluster.kubectl("get", "namespaces", as_user="nobody", check=False)
    assert nobody.returncode != 0 and "Forbidden" in nobody.stderr


def test_new_namespace_gets_default_serviceaccount_and_root_ca(cluster, namespace):
    cluster.kubectl("wait", "--for=create", "serviceaccount/default", "configmap/kube-root-ca.crt",
                    "-n", namespace, "--timeout=60s")


def test_garbage_collector_deletes_children_of_a_deleted_owner(cluster, namespace):
    cluster.apply({**make_finetunejob(), "metadata": {"name": "owner", "namespace": namespace}})
    owner = cluster.get("finetunejob.kubetune.io", "owner", namespace)
    ref = {"apiVersion": owner["apiVersion"], "kind": "FineTuneJob", "name": "owner",
           "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "child", "namespace": namespace, "ownerReferences": [ref]}})
    cluster.kubectl("delete", "finetunejob.kubetune.io", "owner", "-n", namespace, "--wait=false")
    cluster.kubectl("wait", "--for=delete", "configmap/child", "-n", namespace, "--timeout=60s")


def test_pytorchjob_crd_validates_with_the_upstream_schema(cluster, namespace):
    container = {"name": "pytorch", "image": "kubetune/runtime:test", "command": ["kubetune", "train"]}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "pt", "namespace": namespace},
           "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "OnFailure",
                                                       "template": {"spec": {"containers": [container]}}}}}}
    cluster.apply(job)
    stored = cluster.get("pytorchjob.kubeflow.org", "pt", namespace)
    assert stored["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"] == "pytorch"
    bad = {**job, "metadata": {"name": "bad", "namespace": namespace},
           "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": "one"}}}}
    result = cluster.kubectl("create", "-f", "-", input=bad, check=False)
    assert result.returncode != 0 and "spec.pytorchReplicaSpecs.Master.replicas" in result.stderr, result.stderr
