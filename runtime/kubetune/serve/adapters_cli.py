"""`kubetune adapters sync FILE --server URL`: the serving pod's ``adapters`` sidecar.

Keeps the LoRA adapters of the vLLM server at ``--server`` equal to the list in FILE (the InferenceService's
adapters ConfigMap, mounted as a directory so the kubelet refreshes it), and reports what the server holds into
``status.loadedAdapters`` of the InferenceService named by ``KUBETUNE_INFERENCESERVICE``/``KUBETUNE_NAMESPACE``
(a merge patch of the status subresource with the pod's projected token, or ``KUBETUNE_KUBECONFIG``). Without
those variables it only reconciles. ``--once`` reconciles once and exits (non-zero when that failed).

The API key for the server comes from ``VLLM_API_KEY``, the variable the server container reads too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Mapping

from kubetune.config.mapping.serve import read_wanted
from kubetune.serve.adapters import AdapterSyncError, VllmAdmin, sync
from kubetune.status_reporter import TIMEOUT_S, ApiAccess, access_from_kubeconfig, access_in_cluster

FIELD_MANAGER = "kubetune-adapters"


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("action", choices=["sync"], help="sync: reconcile the server against FILE")
    parser.add_argument("file", help="adapter list: {\"adapters\": [{\"name\": ..., \"path\": ...}]}")
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="vLLM server (default %(default)s)")
    parser.add_argument("--keep", action="append", default=[], help="adapter name never unloaded (repeatable)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between checks (default %(default)s)")
    parser.add_argument("--once", action="store_true", help="reconcile once and exit")


class StatusReport:
    """Writes ``status.loadedAdapters`` of one InferenceService (only when the list changed)."""

    def __init__(self, access: ApiAccess, namespace: str, name: str):
        self.access = access
        self.url = (f"{access.server}/apis/kubetune.io/v1alpha1/namespaces/{namespace}/inferenceservices/{name}"
                    f"/status?fieldManager={FIELD_MANAGER}")
        self.last: list[str] | None = None

    def update(self, names: list[str]) -> None:
        if names == self.last:
            return
        body = json.dumps({"status": {"loadedAdapters": names}}).encode()
        request = urllib.request.Request(self.url, data=body, method="PATCH",
                                         headers={"Content-Type": "application/merge-patch+json"})
        if self.access.token:
            request.add_header("Authorization", f"Bearer {self.access.token}")
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=self.access.ssl_context) as response:
            response.read()
        self.last = names


def report_from_env(env: Mapping[str, str]) -> StatusReport | None:
    name, namespace = env.get("KUBETUNE_INFERENCESERVICE"), env.get("KUBETUNE_NAMESPACE")
    if not name or not namespace:
        return None
    if env.get("KUBETUNE_KUBECONFIG"):
        return StatusReport(access_from_kubeconfig(env["KUBETUNE_KUBECONFIG"]), namespace, name)
    if env.get("KUBERNETES_SERVICE_HOST"):
        return StatusReport(access_in_cluster(env), namespace, name)
    return None


def reconcile_once(admin: VllmAdmin, file: str, keep: frozenset[str], report: StatusReport | None) -> None:
    """One pass: read the list, apply it, report what the server holds. Raises AdapterSyncError/OSError."""
    done = sync(admin, read_wanted(file), keep)
    if not done.empty:
        print(f"adapters: unloaded {list(done.unload)}, loaded {[n for n, _ in done.load]}", flush=True)
    if report is not None:
        report.update(sorted(admin.loaded()))


def run(args: argparse.Namespace, command: str) -> int:
    del command
    env = dict(os.environ)
    admin = VllmAdmin(args.server, env.get("VLLM_API_KEY") or None)
    keep = frozenset(args.keep)
    report = report_from_env(env)
    while True:
        try:
            reconcile_once(admin, args.file, keep, report)
            if args.once:
                return 0
        except (AdapterSyncError, OSError, ValueError) as exc:
            # the server may still be loading its weights; the next pass tries again
            print(f"adapters: {exc}", file=sys.stderr, flush=True)
            if args.once:
                return 1
        time.sleep(args.interval)
