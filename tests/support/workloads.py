"""Every kind of pod the operator renders, built by the real render functions from small specs (pure, no cluster).

Used where a property must hold for all of them: the restricted Pod Security Standard, the admin's policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport
from kubetune_operator.reconcile.finetunejob import read_uris, runtime_config
from kubetune_operator.render.export import ExportInputs, render_export
from kubetune_operator.render.serving import ServingInputs, render_serving
from kubetune_operator.render.training import TrainInputs, render_training
from kubetune_operator.resolve import Artifact
from kubetune_operator.settings import RenderSettings
from tests.builders import make_finetunejob, make_inferenceservice, make_modelexport

UID = "5e6f7a8b-0000-4000-8000-000000000003"
SETTINGS = RenderSettings(runtime_image="runtime:test", vllm_image="vllm:test")


def with_meta(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "namespace": namespace, "uid": UID, "generation": 1}}


def training(namespace: str, launcher: str, settings: RenderSettings = SETTINGS) -> list[dict[str, Any]]:
    body = with_meta(make_finetunejob("train", launcher=launcher, model={"uri": "pvc://models/base"},
                                      datasets=[{"uri": "pvc://data/train.jsonl"}],
                                      output={"uri": "pvc://models/out/"}, resources={"nodes": 2}), namespace)
    job = FineTuneJob.model_validate(body)
    out = "pvc://models/out/train-5e6f7a8b/"
    inputs = TrainInputs(output_uri=out, read_uris=read_uris(job, [Artifact(uri="pvc://models/base")]))
    return render_training(body, job, inputs, runtime_config(job, out, {}), settings)


def export(namespace: str, settings: RenderSettings = SETTINGS) -> list[dict[str, Any]]:
    body = with_meta(make_modelexport("merge", source={"fineTuneJobRef": None, "model": {"uri": "pvc://models/b"},
                                                       "adapter": {"uri": "pvc://models/a"}}), namespace)
    inputs = ExportInputs(model_uri="pvc://models/b", adapter_uri="pvc://models/a",
                          output_uri="pvc://models/out/merge-5e6f7a8b/")
    return render_export(body, ModelExport.model_validate(body), inputs, settings)


def serving(namespace: str, backend: str, settings: RenderSettings = SETTINGS, **spec: Any) -> list[dict[str, Any]]:
    gpus = {"gpusPerReplica": 1} if backend == "vllm" else {"gpusPerReplica": 0}
    body = with_meta(make_inferenceservice("chat", model={"uri": "pvc://models/merged"},
                                           engine={"backend": backend}, resources=gpus,
                                           auth={"apiKeySecretRef": {"name": "key", "key": "k"}}, **spec), namespace)
    inputs = ServingInputs(model_uri="pvc://models/merged", name="chat", adapters=(("extra", "pvc://models/a"),))
    return render_serving(body, InferenceService.model_validate(body), inputs, settings)


def all_children(namespace: str, settings: RenderSettings = SETTINGS) -> dict[str, list[dict[str, Any]]]:
    return {"pytorchjob": training(namespace, "pytorchjob", settings), "job": training(namespace, "job", settings),
            "export": export(namespace, settings), "serving-hf": serving(namespace, "hf", settings),
            "serving-vllm": serving(namespace, "vllm", settings),
            # adapters loaded at run time: a sidecar with the runtime identity beside the server
            "serving-vllm-adapters": serving(namespace, "vllm", settings,
                                             adapters=[{"name": "extra", "uri": "pvc://models/a"}])}


def pod_templates(children: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template) for every pod template in rendered children."""
    for child in children:
        spec = child.get("spec") or {}
        if child["kind"] == "PyTorchJob":
            for role, replica in spec["pytorchReplicaSpecs"].items():
                yield f"PyTorchJob {role}", replica["template"]
        elif "template" in spec:
            yield child["kind"], spec["template"]


def pod_from_template(name: str, namespace: str, template: dict[str, Any]) -> dict[str, Any]:
    """A bare Pod with the template's spec, as the Job/Deployment/PyTorchJob controllers would create it."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": template["metadata"].get("labels", {})},
            "spec": template["spec"]}
