"""One pod contract per kind: what the operator renders into a pod and what `kubetune run` runs are built by the same
functions. With `--pvc-root /mnt/pvc` (where pods mount their volumes) a local run renders exactly what the cluster
renders: the training config, the export document, the serve config (vLLM's argv and env: test_vllm_pod_contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport
from kubetune.config.mapping.serve import serve_pod_config
from kubetune.lifecycle.modelexport import export_source
from kubetune.local.context import LocalContext
from kubetune.local.export import export_document
from kubetune.local.finetune import output_location, train_document
from kubetune.local.plan import load_objects
from kubetune.local.serve import local_serve_config, resolve_served
from kubetune.local.sources import Artifact, resolve_reference
from kubetune.local.workdir import WorkDir
from kubetune.uris import UriResolver
from kubetune_operator.reconcile.finetunejob import read_uris, runtime_config
from kubetune_operator.reconcile.modelexport import export_inputs
from kubetune_operator.render.export import render_export
from kubetune_operator.render.serving import ServingInputs, render_serving
from kubetune_operator.render.training import TrainInputs, render_training
from kubetune_operator.resolve import resolve_ref
from kubetune_operator.settings import RenderSettings
from tests.builders import make_finetunejob, make_inferenceservice, make_modelexport

SETTINGS = RenderSettings(runtime_image="runtime:test", vllm_image="vllm:test")
POD_ROOT = Path("/mnt/pvc")
UPSTREAM = {"phase": "Succeeded", "conditions": [{"type": "Succeeded", "status": "True"}],
            "output": {"uri": "pvc://models/sft-1a2b3c4d/", "artifactType": "lora-adapter",
                       "baseModel": {"uri": "pvc://models/base"}}}


def local_object(tmp_path: Path, body: dict[str, Any]) -> tuple[Any, Any, WorkDir, LocalContext]:
    """The object as `kubetune run --pvc-root /mnt/pvc` admits it, and the context of that run."""
    work = WorkDir(tmp_path / "work")
    file = tmp_path / f"{body['metadata']['name']}.yaml"
    file.write_text(yaml.safe_dump(body))
    obj = load_objects([file])[0]
    record, _ = work.admit(obj)
    return obj, record, work, LocalContext(work=work, pvc_root=POD_ROOT, host="0.0.0.0", console=False,
                                           say=lambda _: None)


def in_cluster(body: dict[str, Any], uid: str) -> dict[str, Any]:
    """The same object as the operator reads it from the apiserver."""
    return {**body, "metadata": {**body["metadata"], "namespace": "default", "uid": uid, "generation": 1}}


def config_map_file(children: list[dict[str, Any]], key: str) -> dict[str, Any]:
    found = next(c for c in children if c["kind"] == "ConfigMap" and key in c.get("data", {}))
    return yaml.safe_load(found["data"][key])


def save_upstream(work: WorkDir, tmp_path: Path) -> None:
    """A succeeded FineTuneJob `sft` recorded by an earlier local run (its output on the models volume)."""
    file = tmp_path / "up" / "sft.yaml"
    file.parent.mkdir()
    file.write_text(yaml.safe_dump(make_finetunejob("sft")))
    record, _ = work.admit(load_objects([file])[0])
    record.status = UPSTREAM
    work.save(record)


TRAIN_CASES = {
    "uri-model": make_finetunejob(
        "train", model={"uri": "pvc://models/base", "template": "qwen"},
        datasets=[{"uri": "pvc://data/train.jsonl", "format": "alpaca"}], output={"uri": "pvc://models/out/"},
        training={"epochs": 2, "learningRate": 1e-4}, extraArgs={"lora_target": "q_proj,v_proj"}),
    "dpo-from-a-finetunejob": make_finetunejob(
        "dpo", stage="dpo", model={"uri": None, "fineTuneJobRef": {"name": "sft"}},
        datasets=[{"uri": "pvc://data/pairs.jsonl", "format": "alpaca", "ranking": True}],
        output={"uri": "pvc://models/out/"}, preference={"beta": 0.2}),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_training_config_is_the_same_locally_and_in_the_cluster(tmp_path, case):
    body = TRAIN_CASES[case]
    obj, record, work, ctx = local_object(tmp_path, body)
    save_upstream(work, tmp_path)
    refs = {ref: resolve_reference(*ref, obj.namespace, work) for ref in (("FineTuneJob", "sft"),)}
    out_uri, out_dir = output_location(obj, record, UriResolver(pvc_root=POD_ROOT, base_dir=obj.base_dir),
                                       obj.resource.spec.output.uri)
    local = train_document(obj, record, ctx, out_dir, {k: v for k, v in refs.items() if isinstance(v, Artifact)})

    parent = in_cluster(body, record.uid)
    job = FineTuneJob.model_validate(parent)
    by_ref = {("FineTuneJob", "sft"): resolve_ref(("FineTuneJob", "sft"), {"status": UPSTREAM})}
    config = runtime_config(job, out_uri, by_ref)  # type: ignore[arg-type]
    inputs = TrainInputs(output_uri=out_uri, read_uris=read_uris(job, list(by_ref.values())))
    pod = config_map_file(render_training(parent, job, inputs, config, SETTINGS), "config.yaml")

    assert local == pod
    assert pod["output_dir"] == f"/mnt/pvc/models/out/{body['metadata']['name']}-{record.uid.replace('-', '')[:8]}"
    if case == "dpo-from-a-finetunejob":
        assert pod["model_name_or_path"] == "/mnt/pvc/models/sft-1a2b3c4d"


EXPORT_CASES = {
    "adapter-of-a-finetunejob": {"fineTuneJobRef": {"name": "sft"}},
    "adapter-on-a-given-base": {"fineTuneJobRef": {"name": "sft"}, "model": {"uri": "pvc://models/bf16-base"}},
    "uris": {"fineTuneJobRef": None, "model": {"uri": "pvc://models/b"}, "adapter": {"uri": "pvc://models/a"}},
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_document_is_the_same_locally_and_in_the_cluster(tmp_path, case):
    body = make_modelexport("merged", source=EXPORT_CASES[case], output={"uri": "pvc://models/exports/"},
                            quantization=None)
    obj, record, work, _ = local_object(tmp_path, body)
    save_upstream(work, tmp_path)
    found = resolve_reference("FineTuneJob", "sft", obj.namespace, work) if "fineTuneJobRef" in body["spec"][
        "source"] else None
    assert not hasattr(found, "reason")
    chosen = export_source(obj.resource.spec.source, found)  # type: ignore[arg-type]
    local = export_document(obj, record, chosen)  # type: ignore[arg-type]

    parent = in_cluster(body, record.uid)
    mexp = ModelExport.model_validate(parent)
    inputs = export_inputs(parent, mexp, {("FineTuneJob", "sft"): {"status": UPSTREAM}})
    pod = config_map_file(render_export(parent, mexp, inputs, SETTINGS), "export.yaml")  # type: ignore[arg-type]

    assert local == pod
    assert "fineTuneJobRef" not in pod["spec"]["source"]


def test_hf_serve_config_is_the_same_locally_and_in_the_cluster(tmp_path):
    body = make_inferenceservice("bot", model={"uri": "pvc://models/base"}, engine={"backend": "hf",
                                                                                     "maxModelLen": 1024},
                                 adapters=[{"name": "v2", "uri": "pvc://models/a/v2"}],
                                 limits={"maxBodyBytes": 65536})
    obj, _, _, ctx = local_object(tmp_path, body)
    isvc = obj.resource
    served = resolve_served(isvc, [Artifact("pvc://models/base"), Artifact("pvc://models/a/v2")],
                            UriResolver(pvc_root=POD_ROOT))
    local = serve_pod_config(local_serve_config(isvc, served, ctx))

    parent = in_cluster(body, "9f8e7d6c-0000-4000-8000-000000000003")
    inputs = ServingInputs(model_uri="pvc://models/base", name="bot", adapters=(("v2", "pvc://models/a/v2"),))
    pod = config_map_file(render_serving(parent, InferenceService.model_validate(parent), inputs, SETTINGS),
                          "serve.yaml")

    assert local == pod
    assert pod["lora_adapters"] == [{"name": "v2", "path": "/mnt/pvc/models/a/v2"}]
    assert pod["limits"]["max_body_bytes"] == 65536 and "api_key" not in pod
