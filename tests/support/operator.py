"""Run the kubetune operator in-process (a thread running the same code as `kubetune operator`), as the
ServiceAccount from manifests/ with a real token, and wait for what it does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubetune_operator.cli import serve
from kubetune_operator.settings import OperatorConfig, RenderSettings
from tests.support.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "kubetune-system"
OPERATOR_ACCOUNT = "kubetune-operator"
T = TypeVar("T")


def install_manifests(cluster: Cluster) -> None:
    """Everything in manifests/ (namespace, CRDs, operator RBAC and Deployment), as a person would apply it."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "manifests"))


def install_runtime_identity(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "manifests" / "rbac-runtime.yaml"))


@dataclass
class RunningOperator:
    """An operator thread; ``stop()`` ends it the way SIGTERM would."""

    cluster: Cluster
    kubeconfig: Path
    resync_seconds: float = 20.0
    liveness: str | None = None
    stop_flag: threading.Event = field(default_factory=threading.Event)
    ready_flag: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: list[BaseException] = field(default_factory=list)

    def start(self, timeout_s: float = 60.0) -> RunningOperator:
        cfg = OperatorConfig(kubeconfig=str(self.kubeconfig), resync_seconds=self.resync_seconds,
                             liveness=self.liveness,
                             render=RenderSettings(runtime_image="kubetune-runtime:test", vllm_image="vllm:test"))

        def main() -> None:
            try:
                serve(cfg, stop=self.stop_flag, ready=self.ready_flag)
            except BaseException as exc:  # surfaced by the fixture
                self.error.append(exc)

        self.thread = threading.Thread(target=main, name="kubetune-operator", daemon=True)
        self.thread.start()
        if not self.ready_flag.wait(timeout_s):
            raise TimeoutError(f"operator not ready after {timeout_s}s: {self.error}")
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.stop_flag.set()
        if self.thread:
            self.thread.join(timeout_s)
        if self.error:
            raise self.error[0]


def start_operator(cluster: Cluster, **kwargs: Any) -> RunningOperator:
    kubeconfig = cluster.serviceaccount_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
    return RunningOperator(cluster, kubeconfig, **kwargs).start()


def wait_for(probe: Callable[[], T | None], timeout_s: float = 60.0, interval_s: float = 0.2,
             what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; the timeout only bounds a failing test."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not reached in {timeout_s}s (last: {last!r})")


def dig(obj: Any, *path: str | int, default: Any = None) -> Any:
    """``obj[path[0]][path[1]]...``, or ``default`` where any step is missing, None or out of range.

    Every wait-probe reads objects through this (or :func:`field_of`): the operator writes ``status`` some time
    after the object exists, and a probe must keep polling instead of failing with KeyError or TypeError.
    """
    for key in path:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and -len(obj) <= key < len(obj):
            obj = obj[key]
        else:
            return default
        if obj is None:
            return default
    return obj


def condition_of(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    """The metav1 condition of type ``ctype``, or None (also when there is no object or status yet)."""
    return next((c for c in dig(obj, "status", "conditions", default=[]) if c.get("type") == ctype), None)


def get_json(cluster: Cluster, resource: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", resource, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def list_json(cluster: Cluster, resource: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    args = ["get", resource, "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
    return json.loads(cluster.kubectl(*args).stdout)["items"]


def patch_status(cluster: Cluster, resource: str, name: str, namespace: str, status: dict[str, Any]) -> None:
    """Play the missing controller: write a child's status as the training-operator / kubelet would."""
    cluster.kubectl("patch", resource, name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))


def field_of(cluster: Cluster, resource: str, name: str, namespace: str, *path: str | int) -> Any:
    """One field of an object, or None while the object or the field does not exist."""
    return dig(get_json(cluster, resource, name, namespace), *path)


def phase_of(cluster: Cluster, resource: str, name: str, namespace: str) -> str | None:
    return field_of(cluster, resource, name, namespace, "status", "phase")
