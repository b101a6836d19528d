"""kubetune run's side of spec.env and s3:// staging: which URIs a spec reads, which variables a run gets."""

from __future__ import annotations

import os

from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.modelexport import ModelExport
from kubetune.local.environment import spec_environment
from kubetune.local.storage import spec_inputs
from tests.builders import make_finetunejob, make_modelexport


def test_spec_inputs_are_every_s3_uri_but_the_output():
    job = FineTuneJob.model_validate(make_finetunejob(
        "x", model={"uri": "s3://models/base"},
        datasets=[{"uri": "s3://data/a.jsonl"}, {"uri": "pvc://data/b.jsonl"}, {"uri": "s3://data/a.jsonl"}],
        output={"uri": "s3://models/out/"}))
    body = make_modelexport("y")
    body["spec"]["source"] = {"model": {"uri": "hf://org/m"}, "adapter": {"uri": "s3://runs/a/"}}
    export = ModelExport.model_validate(body)
    assert spec_inputs(job.spec) == ["s3://models/base", "s3://data/a.jsonl"]
    assert spec_inputs(export.spec) == ["s3://runs/a/"]


def test_literal_env_is_set_for_the_run_and_restored(monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "before")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    job = FineTuneJob.model_validate(make_finetunejob("x", env=[
        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"},
        {"name": "MLFLOW_EXPERIMENT_NAME", "value": "run"},
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "k"}}}]))
    said: list[str] = []

    with spec_environment(job.spec, said.append):
        inside = (os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_EXPERIMENT_NAME"])

    assert inside == ("http://mlflow:5000", "run")
    assert "MLFLOW_TRACKING_URI" not in os.environ and os.environ["MLFLOW_EXPERIMENT_NAME"] == "before"
    assert said == ["spec.env WANDB_API_KEY: comes from a Secret or ConfigMap, which a local run cannot read; "
                    "export it in the shell"]
