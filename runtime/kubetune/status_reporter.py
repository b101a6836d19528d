"""Training progress into the pod's own FineTuneJob status, over plain HTTPS (no Kubernetes client needed).

Activation: the operator sets ``KUBETUNE_FINETUNEJOB`` and ``KUBETUNE_NAMESPACE`` in training pods; this sink is
registered under the ``kubetune.progress_sinks`` entry point and is a no-op everywhere else. The API is reached
with ``KUBETUNE_KUBECONFIG`` (a kubeconfig file, for tests and debugging) or else the in-cluster ServiceAccount
(token and CA under /var/run/secrets/kubernetes.io/serviceaccount, ``KUBERNETES_SERVICE_HOST``/``_PORT``).

Each update is one JSON merge patch of the ``status`` subresource setting ``status.progress`` (and
``status.latestCheckpoint`` once a complete checkpoint exists); after training, the benchmark scores of
``spec.evaluation`` go into ``status.evaluation`` the same way. The operator never writes those three fields.

RBAC footprint: ``patch`` (and ``get``) on ``finetunejobs/status`` in the pod's namespace only — the Role
``kubetune-runtime`` of manifests/tenant. It cannot change any spec, create objects, or read Secrets.
"""

from __future__ import annotations

import base64
import json
import math
import os
import ssl
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
FIELD_MANAGER = "kubetune-runtime"
CHECKPOINT_MARKER = "kubetune-checkpoint.json"  # written last by kubetune.train.checkpoints
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ApiAccess:
    """Where the apiserver is and how to authenticate: a bearer token and/or a client certificate."""

    server: str
    ssl_context: ssl.SSLContext
    token: str | None = None


def _data_file(data: str) -> str:
    handle = tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False)  # noqa: SIM115 (kept for ssl)
    handle.write(base64.b64decode(data))
    handle.close()
    return handle.name


def access_from_kubeconfig(path: str | Path) -> ApiAccess:
    """The current context of a kubeconfig: server, CA, and a token or client certificate."""
    doc = yaml.safe_load(Path(path).read_text())
    context = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
    user: dict[str, Any] = next((u["user"] for u in doc.get("users") or [] if u["name"] == context.get("user")), {})
    ca = cluster.get("certificate-authority") or (
        _data_file(cluster["certificate-authority-data"]) if cluster.get("certificate-authority-data") else None)
    ctx = ssl.create_default_context(cafile=ca)
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    cert = user.get("client-certificate") or (
        _data_file(user["client-certificate-data"]) if user.get("client-certificate-data") else None)
    key = user.get("client-key") or (_data_file(user["client-key-data"]) if user.get("client-key-data") else None)
    if cert and key:
        ctx.load_cert_chain(cert, key)
    token = user.get("token") or (Path(user["tokenFile"]).read_text().strip() if user.get("tokenFile") else None)
    return ApiAccess(cluster["server"].rstrip("/"), ctx, token)


def access_in_cluster(env: Mapping[str, str]) -> ApiAccess:
    host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
    return ApiAccess(f"https://{host}:{port}", ctx, (SA_DIR / "token").read_text().strip())


def status_progress(progress: Mapping[str, Any]) -> dict[str, Any]:
    """A progress snapshot in the FineTuneJob ``status.progress`` schema (integer percent, string loss/epoch)."""
    out: dict[str, Any] = {"step": int(progress.get("step") or 0)}
    if progress.get("totalSteps") is not None:
        out["totalSteps"] = int(progress["totalSteps"])
    if progress.get("percent") is not None:
        out["percent"] = max(0, min(100, math.floor(float(progress["percent"]))))
    for key in ("loss", "epoch"):
        if progress.get(key) is not None:
            out[key] = f"{float(progress[key]):.4g}"
    if progress.get("etaSeconds") is not None:
        out["etaSeconds"] = max(0, int(progress["etaSeconds"]))
    if progress.get("updatedAt"):
        out["updatedAt"] = str(progress["updatedAt"]).replace("+00:00", "Z")
    return out


def latest_checkpoint(output_dir: str | None, output_uri: str | None) -> str | None:
    """URI of the newest complete ``checkpoint-<step>`` under the output directory, if any."""
    if not output_dir or not output_uri or not Path(output_dir).is_dir():
        return None
    steps = [int(p.name.split("-", 1)[1]) for p in Path(output_dir).glob("checkpoint-*")
             if p.name.split("-", 1)[1].isdigit() and (p / CHECKPOINT_MARKER).is_file()]
    return f"{output_uri.rstrip('/')}/checkpoint-{max(steps)}" if steps else None


class FineTuneJobStatusSink:
    """A progress sink (``update(progress)``) that patches one FineTuneJob's status."""

    def __init__(self, access: ApiAccess, namespace: str, name: str, output_dir: str | None = None,
                 output_uri: str | None = None):
        self.access = access
        self.url = (f"{access.server}/apis/kubetune.io/v1alpha1/namespaces/{namespace}/finetunejobs/{name}/status"
                    f"?fieldManager={FIELD_MANAGER}")
        self.output_dir, self.output_uri = output_dir, output_uri

    def update(self, progress: dict[str, Any]) -> None:
        status: dict[str, Any] = {"progress": status_progress(progress)}
        checkpoint = latest_checkpoint(self.output_dir, self.output_uri)
        if checkpoint:
            status["latestCheckpoint"] = checkpoint
        self._patch(status)

    def evaluation(self, evaluation: dict[str, Any]) -> None:
        """Set ``status.evaluation`` (the benchmark scores of ``kubetune.eval.training.evaluation_status``)."""
        self._patch({"evaluation": evaluation})

    def _patch(self, status: dict[str, Any]) -> None:
        request = urllib.request.Request(self.url, data=json.dumps({"status": status}).encode(), method="PATCH",
                                         headers={"Content-Type": "application/merge-patch+json",
                                                  "Accept": "application/json"})
        if self.access.token:
            request.add_header("Authorization", f"Bearer {self.access.token}")
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=self.access.ssl_context) as response:
            response.read()


def from_env(env: Mapping[str, str]) -> FineTuneJobStatusSink | None:
    """The sink the operator's pod environment asks for, or None outside such a pod."""
    name, namespace = env.get("KUBETUNE_FINETUNEJOB"), env.get("KUBETUNE_NAMESPACE")
    if not name or not namespace:
        return None
    if env.get("KUBETUNE_KUBECONFIG"):
        access = access_from_kubeconfig(env["KUBETUNE_KUBECONFIG"])
    elif env.get("KUBERNETES_SERVICE_HOST"):
        access = access_in_cluster(env)
    else:
        return None
    return FineTuneJobStatusSink(access, namespace, name, env.get("KUBETUNE_OUTPUT_DIR"),
                                 env.get("KUBETUNE_OUTPUT_URI"))


def from_config(cfg: Any) -> FineTuneJobStatusSink | None:
    """Entry point ``kubetune.progress_sinks``: ``f(cfg) -> sink | None`` (the config is not needed)."""
    del cfg
    return from_env(os.environ)
