"""Adapters without restarts, against the session's real vLLM server (CPU build): the pod's ``adapters`` sidecar
(`kubetune adapters sync`) loads and unloads LoRA adapters in the running server from the list file the operator
renders into a ConfigMap, and reports what the server holds into the InferenceService status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
import yaml

from kubetune.config.mapping.serve import render_wanted
from kubetune.serve.adapters import VllmAdmin
from tests.support.serving import API_KEY, ROOT, SERVED, inferenceservice

pytestmark = pytest.mark.slow


def adapter_paths(endpoint) -> dict[str, str]:
    """Served name -> adapter directory, as `kubetune run` resolved the FineTuneJob references."""
    resolved = endpoint.record()["status"]["resolvedAdapters"]
    return {a["name"]: a["uri"].removeprefix("file://") for a in resolved}


def sync(list_file: Path, server: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One pass of the sidecar, as the pod runs it (only --once added)."""
    return subprocess.run([sys.executable, "-m", "kubetune.cli.main", "adapters", "sync", str(list_file),
                           "--server", server, "--once"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "VLLM_API_KEY": API_KEY, **(env or {})})


def server_of(endpoint) -> str:
    return endpoint.url.removesuffix("/v1")


@pytest.fixture
def restore(vllm_endpoint, tmp_path):
    """Put the session server's adapters back as the conformance suite expects them."""
    yield
    original = tmp_path / "original.json"
    original.write_text(render_wanted(adapter_paths(vllm_endpoint)))
    assert sync(original, server_of(vllm_endpoint)).returncode == 0


def test_kubetune_run_serves_the_inferenceservice_with_vllm(vllm_endpoint):
    """`kubetune run` with `backend: vllm`: the record turns Ready once a real completion succeeded."""
    status = vllm_endpoint.record()["status"]
    assert status["phase"] == "Ready" and status["url"] == vllm_endpoint.url
    assert status["servedModels"] == [SERVED, "sea-poet", "land-poet"]
    assert status["loadedAdapters"] == ["sea-poet", "land-poet"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    log = vllm_endpoint.log.read_text()
    assert "starting vLLM: " in log and "--enable-lora" in log and "--lora-modules" not in log
    print(f"vLLM via kubetune run: ready {vllm_endpoint.startup_s:.0f}s after start")


def test_sidecar_loads_and_unloads_adapters_in_the_running_server(vllm_endpoint, tmp_path, restore):
    paths = adapter_paths(vllm_endpoint)
    client = openai.OpenAI(base_url=vllm_endpoint.url, api_key=API_KEY, max_retries=0, timeout=120)

    def answer(model: str) -> str:
        return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                              temperature=0, max_tokens=10).choices[0].message.content

    sea = answer("sea-poet")
    pid = vllm_endpoint.process.pid
    wanted = tmp_path / "adapters.json"
    wanted.write_text(render_wanted({"sea-poet": paths["sea-poet"], "sea-again": paths["sea-poet"]}))
    done = sync(wanted, server_of(vllm_endpoint))
    assert done.returncode == 0, done.stderr
    assert "unloaded ['land-poet'], loaded ['sea-again']" in done.stdout
    assert {m.id for m in client.models.list()} == {SERVED, "sea-poet", "sea-again"}
    assert answer("sea-again") == sea  # the same weights under a new name, loaded at run time
    with pytest.raises(openai.NotFoundError):
        answer("land-poet")
    again = sync(wanted, server_of(vllm_endpoint))
    assert again.returncode == 0 and again.stdout == ""  # in sync: nothing to do
    assert vllm_endpoint.process.pid == pid and vllm_endpoint.process.poll() is None  # never restarted


def test_a_bad_adapter_path_fails_the_pass_and_says_why(vllm_endpoint, tmp_path, restore):
    wanted = tmp_path / "adapters.json"
    wanted.write_text(render_wanted({"ghost": str(tmp_path / "no-such-adapter")}))
    done = sync(wanted, server_of(vllm_endpoint))
    assert done.returncode == 1
    assert "/v1/load_lora_adapter" in done.stderr and "HTTP 4" in done.stderr
    assert "ghost" not in VllmAdmin(server_of(vllm_endpoint), API_KEY).loaded()


@pytest.mark.cluster
def test_sidecar_reports_loaded_adapters_into_the_inferenceservice_status(vllm_endpoint, cluster, namespace,
                                                                         tmp_path, restore):
    """With the runtime identity's real token (manifests/rbac-runtime.yaml), as in the pod."""
    cluster.apply(list(yaml.safe_load_all((ROOT / "manifests" / "rbac-runtime.yaml").read_text())), "-n", namespace)
    body = inferenceservice("bot", "vllm", Path("/models/base"))
    body["metadata"]["namespace"] = namespace
    body["spec"]["model"] = {"uri": "pvc://models/base"}
    body["spec"]["adapters"] = [{"name": "sea-poet", "uri": "pvc://models/sea"}]
    cluster.apply(body)
    wanted = tmp_path / "adapters.json"
    wanted.write_text(render_wanted({"sea-poet": adapter_paths(vllm_endpoint)["sea-poet"]}))
    env = {"KUBETUNE_KUBECONFIG": str(cluster.serviceaccount_kubeconfig(namespace, "kubetune-runtime")),
           "KUBETUNE_INFERENCESERVICE": "bot", "KUBETUNE_NAMESPACE": namespace}
    done = sync(wanted, server_of(vllm_endpoint), env)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    status: dict = {}
    while time.monotonic() < deadline and "loadedAdapters" not in status:
        status = cluster.get("inferenceservices.kubetune.io", "bot", namespace).get("status") or {}
        time.sleep(0.5)
    assert status.get("loadedAdapters") == ["sea-poet"]


def session_members(sid: int) -> list[int]:
    """PIDs whose session is ``sid`` (the `kubetune run` process was started in its own session)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def test_sigterm_stops_kubetune_run_and_the_vllm_server_it_started(vllm_endpoint):
    """Last test of the session's vLLM server: it stops it. `kill` (not only Ctrl-C) must not orphan vLLM."""
    run = vllm_endpoint.process
    assert len(session_members(run.pid)) > 2  # kubetune run, the vLLM API server, its engine core and worker
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=120)
    deadline = time.monotonic() + 60
    while session_members(run.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_members(run.pid) == []
    status = vllm_endpoint.record()["status"]
    assert status["phase"] == "Pending" and "url" not in status and "loadedAdapters" not in status
