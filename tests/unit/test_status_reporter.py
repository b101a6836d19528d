"""The training pod's FineTuneJob status sink: conversion, activation and checkpoint discovery (no network)."""

from __future__ import annotations

import pytest

from kubetune.status_reporter import FineTuneJobStatusSink, from_env, latest_checkpoint, status_progress


@pytest.mark.parametrize(("snapshot", "expected"), [
    ({"step": 12, "totalSteps": 40, "percent": 30.0, "loss": 0.81234, "epoch": 0.9, "etaSeconds": 54,
      "updatedAt": "2026-01-01T00:00:00+00:00"},
     {"step": 12, "totalSteps": 40, "percent": 30, "loss": "0.8123", "epoch": "0.9", "etaSeconds": 54,
      "updatedAt": "2026-01-01T00:00:00Z"}),
    ({"step": 0, "totalSteps": 3, "percent": 0.0, "loss": None, "epoch": None, "etaSeconds": None},
     {"step": 0, "totalSteps": 3, "percent": 0}),
    ({"step": 7, "totalSteps": 7, "percent": 100.0, "loss": 12.5}, {"step": 7, "totalSteps": 7, "percent": 100,
                                                                    "loss": "12.5"}),
])
def test_status_progress_matches_the_crd_schema(snapshot, expected):
    assert status_progress(snapshot) == expected


def test_latest_complete_checkpoint(tmp_path):
    for step, complete in ((5, True), (10, True), (15, False)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        if complete:
            (ckpt / "kubetune-checkpoint.json").write_text("{}")
    assert latest_checkpoint(str(tmp_path), "pvc://m/run-1/") == "pvc://m/run-1/checkpoint-10"
    assert latest_checkpoint(str(tmp_path / "missing"), "pvc://m/run-1/") is None


def test_activation_needs_the_pod_environment(tmp_path):
    assert from_env({}) is None
    assert from_env({"KUBETUNE_FINETUNEJOB": "run", "KUBETUNE_NAMESPACE": "ns"}) is None  # no API access
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443/', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: abc}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n")
    sink = from_env({"KUBETUNE_FINETUNEJOB": "run", "KUBETUNE_NAMESPACE": "ns",
                     "KUBETUNE_KUBECONFIG": str(kubeconfig)})
    assert isinstance(sink, FineTuneJobStatusSink)
    assert sink.access.token == "abc"
    assert sink.url == ("https://127.0.0.1:6443/apis/kubetune.io/v1alpha1/namespaces/ns/finetunejobs/run/status"
                        "?fieldManager=kubetune-runtime")
