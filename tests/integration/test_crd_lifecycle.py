"""Status, generation, immutability and scale as the real apiserver enforces them on the generated CRDs."""

from __future__ import annotations

import json

import pytest

from kubetune.api.crd import KINDS, crd
from kubetune.api.finetunejob import FineTuneJobStatus
from kubetune.api.inferenceservice import InferenceServiceStatus
from kubetune.api.modelexport import ModelExportStatus
from tests.builders import make_finetunejob, make_inferenceservice, make_modelexport
from tests.support.samples import fill, leaf_paths, schema_leaf_paths

pytestmark = pytest.mark.cluster

STATUS_TYPES = {"FineTuneJob": FineTuneJobStatus, "ModelExport": ModelExportStatus,
                "InferenceService": InferenceServiceStatus}
BUILDERS = {"FineTuneJob": make_finetunejob, "ModelExport": make_modelexport,
            "InferenceService": make_inferenceservice}


def _resource(kind: str) -> str:
    return f"{kind.lower()}.kubetune.io"


def _patch(cluster, kind, name, namespace, patch, *extra, check=True):
    return cluster.kubectl("patch", _resource(kind), name, "-n", namespace, "--type=merge", "-p", json.dumps(patch),
                           *extra, check=check)


@pytest.mark.parametrize("kind", [k.name for k in KINDS])
def test_full_status_reads_back_unpruned(cluster, namespace, kind):
    status = fill(STATUS_TYPES[kind])
    schema = crd(next(k for k in KINDS if k.name == kind))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    declared = schema_leaf_paths(schema["properties"]["status"])
    assert leaf_paths(status) == declared, "the sample must carry every status field the CRD declares"
    cluster.apply({**BUILDERS[kind](), "metadata": {"name": "s", "namespace": namespace}})
    _patch(cluster, kind, "s", namespace, {"status": status}, "--subresource=status")
    stored = cluster.get(_resource(kind), "s", namespace)
    assert stored["status"] == status
    assert stored["metadata"]["generation"] == 1, "a status write must not bump generation"


def test_spec_update_bumps_generation(cluster, namespace):
    cluster.apply({**make_inferenceservice(), "metadata": {"name": "gen", "namespace": namespace}})
    _patch(cluster, "InferenceService", "gen", namespace, {"spec": {"servedModelName": "renamed"}})
    stored = cluster.get(_resource("InferenceService"), "gen", namespace)
    assert stored["metadata"]["generation"] == 2
    assert stored["spec"]["servedModelName"] == "renamed"


@pytest.mark.parametrize(("kind", "patch", "message"), [
    ("FineTuneJob", {"spec": {"stage": "pt"}}, "spec is immutable except runPolicy.suspend"),
    ("FineTuneJob", {"spec": {"lora": {"rank": 64}}}, "spec is immutable except runPolicy.suspend"),
    ("FineTuneJob", {"spec": {"runPolicy": {"backoffLimit": 9}}}, "spec is immutable except runPolicy.suspend"),
    ("FineTuneJob", {"spec": {"queueName": "other"}}, "spec is immutable except runPolicy.suspend"),
    ("ModelExport", {"spec": {"dtype": "float16"}}, "spec is immutable: create a new ModelExport"),
    ("ModelExport", {"spec": {"output": {"uri": "file:///elsewhere/"}}}, "spec is immutable"),
], ids=["ftj-stage", "ftj-lora-rank", "ftj-backoff", "ftj-add-optional", "mexp-dtype", "mexp-output"])
def test_immutable_spec_rejects_edits(cluster, namespace, kind, patch, message):
    cluster.apply({**BUILDERS[kind](), "metadata": {"name": "imm", "namespace": namespace}})
    before = cluster.get(_resource(kind), "imm", namespace)
    result = _patch(cluster, kind, "imm", namespace, patch, check=False)
    assert result.returncode != 0, f"edit accepted: {patch}"
    assert "spec: Invalid value" in result.stderr and message in result.stderr, result.stderr
    assert cluster.get(_resource(kind), "imm", namespace)["spec"] == before["spec"]


def test_finetunejob_suspend_can_toggle(cluster, namespace):
    cluster.apply({**make_finetunejob(), "metadata": {"name": "sus", "namespace": namespace}})
    for value in (True, False):
        _patch(cluster, "FineTuneJob", "sus", namespace, {"spec": {"runPolicy": {"suspend": value}}})
        stored = cluster.get(_resource("FineTuneJob"), "sus", namespace)
        assert stored["spec"]["runPolicy"]["suspend"] is value
    assert stored["metadata"]["generation"] == 3


def test_inferenceservice_scale_subresource(cluster, namespace):
    cluster.apply({**make_inferenceservice(), "metadata": {"name": "sc", "namespace": namespace}})
    _patch(cluster, "InferenceService", "sc", namespace,
           {"status": {"replicas": 2, "selector": "app.kubernetes.io/instance=sc"}}, "--subresource=status")
    cluster.kubectl("scale", _resource("InferenceService"), "sc", "-n", namespace, "--replicas=3")
    assert cluster.get(_resource("InferenceService"), "sc", namespace)["spec"]["replicas"] == 3
    scale = json.loads(cluster.kubectl("get", "--raw",
                                       f"/apis/kubetune.io/v1alpha1/namespaces/{namespace}/inferenceservices/sc/scale"
                                       ).stdout)
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 2
    assert scale["status"]["selector"] == "app.kubernetes.io/instance=sc"
