"""Start and stop etcd + kube-apiserver + kube-controller-manager as local processes on loopback.

The binaries are built from published Go modules by ``hack/build-controlplane.sh`` into a version-keyed cache
outside the clone. Everything listens on 127.0.0.1 on free ports; certificates come from :mod:`tests.support.pki`.
A :class:`Plane` is saved as JSON in its work directory so a detached plane (``make cluster-up``) can be stopped
later by PID.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import kubeconfig, pki
from tests.support.processes import Process, free_port, https_get, spawn, stop, wait_until

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "build-controlplane.sh"
KUBEFLOW_MODULE_DIR = ROOT / "hack" / "controlplane" / "kubeflow"
STATE_FILE = "plane.json"

# Controllers the tests rely on: owner-reference garbage collection, namespace deletion, the `default`
# ServiceAccount, token Secrets and the kube-root-ca.crt ConfigMap. Extend here when operator tests need more.
CONTROLLERS: tuple[str, ...] = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)


def build_binaries() -> Path:
    """Build (or reuse) the control-plane binaries; returns the bin dir (the script's last stdout line)."""
    override = os.environ.get("KUBETUNE_CONTROLPLANE_BIN")
    if override:
        return Path(override)
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True)
    return Path(proc.stdout.strip().splitlines()[-1])


def pytorchjob_crd() -> Path:
    """The Kubeflow PyTorchJob CRD, read from the training-operator module in the Go module cache."""
    module_dir = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "github.com/kubeflow/training-operator"],
        cwd=KUBEFLOW_MODULE_DIR, stdout=subprocess.PIPE, text=True, check=True,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
    ).stdout.strip()
    path = Path(module_dir) / "manifests" / "base" / "crds" / "kubeflow.org_pytorchjobs.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `make controlplane` to download the training-operator module")
    return path


@dataclass
class Plane:
    """A running control plane: where it lives, how to reach it, and the PIDs to stop."""

    workdir: Path
    server: str
    processes: list[Process] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def admin_ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def save(self) -> None:
        data = {"workdir": str(self.workdir), "server": self.server, "timings": self.timings,
                "processes": [p.to_json() for p in self.processes]}
        (self.workdir / STATE_FILE).write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, workdir: Path) -> Plane:
        data = json.loads((workdir / STATE_FILE).read_text())
        return cls(Path(data["workdir"]), data["server"], [Process.from_json(p) for p in data["processes"]],
                   data.get("timings", {}))

    def alive(self) -> bool:
        return bool(self.processes) and all(p.alive() for p in self.processes)

    def stop(self) -> None:
        """Stop every component we started, newest first, by PID."""
        for process in reversed(self.processes):
            stop(process)
        self.processes.clear()
        if (self.workdir / STATE_FILE).exists():
            self.save()


def _start_etcd(plane: Plane, bin_dir: Path, timeout_s: float) -> str:
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    argv = [str(bin_dir / "etcd"), f"--data-dir={plane.workdir / 'etcd'}", "--name=default",
            f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}", "--unsafe-no-fsync=true", "--log-level=warn"]
    etcd = spawn("etcd", argv, plane.workdir / "logs")
    plane.processes.append(etcd)

    def healthy() -> bool:
        with urllib.request.urlopen(f"{client_url}/health", timeout=5) as resp:
            return json.loads(resp.read()).get("health") == "true"

    plane.timings["etcd"] = wait_until(etcd, healthy, timeout_s, "etcd /health")
    return client_url


def _apiserver_argv(bin_dir: Path, pki_dir: Path, port: int, etcd_url: str) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"), f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1", f"--secure-port={port}",
        "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
        f"--tls-cert-file={pki_dir / 'apiserver.crt'}", f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
        f"--client-ca-file={pki_dir / 'client-ca.crt'}", "--authorization-mode=RBAC",
        f"--service-account-issuer=https://127.0.0.1:{port}", f"--service-account-key-file={pki_dir / 'sa.pub'}",
        f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
        "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true", "--profiling=false",
    ]


def _start_apiserver(plane: Plane, bin_dir: Path, etcd_url: str, timeout_s: float) -> None:
    port = int(plane.server.rsplit(":", 1)[1])
    apiserver = spawn("kube-apiserver", _apiserver_argv(bin_dir, plane.pki, port, etcd_url), plane.workdir / "logs")
    plane.processes.append(apiserver)
    context = plane.admin_ssl()
    plane.timings["kube-apiserver"] = wait_until(
        apiserver, lambda: https_get(f"{plane.server}/readyz", context)[0] == 200, timeout_s, "/readyz")


def _start_controller_manager(plane: Plane, bin_dir: Path, controllers: tuple[str, ...], timeout_s: float) -> None:
    kcm_config = kubeconfig.write(
        plane.workdir / "controller-manager.kubeconfig", plane.server, plane.pki / "ca.crt",
        kubeconfig.Credentials(cert=plane.pki / "controller-manager.crt", key=plane.pki / "controller-manager.key"))
    port = free_port()
    argv = [str(bin_dir / "kube-controller-manager"), f"--kubeconfig={kcm_config}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", f"--cert-dir={plane.workdir / 'kcm-certs'}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={plane.pki / 'sa.key'}", f"--root-ca-file={plane.pki / 'ca.crt'}",
            f"--controllers={','.join(controllers)}", "--profiling=false"]
    kcm = spawn("kube-controller-manager", argv, plane.workdir / "logs")
    plane.processes.append(kcm)
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # KCM serves a self-signed cert; only its health is read
    plane.timings["kube-controller-manager"] = wait_until(
        kcm, lambda: https_get(f"https://127.0.0.1:{port}/healthz", insecure)[0] == 200, timeout_s, "/healthz")
    # The serviceaccount controller has done its first pass once `default` exists: pods can be created.
    admin = plane.admin_ssl()
    url = f"{plane.server}/api/v1/namespaces/default/serviceaccounts/default"
    plane.timings["default-serviceaccount"] = wait_until(
        kcm, lambda: https_get(url, admin)[0] == 200, timeout_s, "ServiceAccount default/default")


def start(workdir: Path, bin_dir: Path, *, controllers: tuple[str, ...] = CONTROLLERS, timeout_s: float = 120.0,
          before_controllers: Callable[[Plane], None] | None = None) -> Plane:
    """Generate PKI, start etcd, kube-apiserver and kube-controller-manager, write the admin kubeconfig.

    ``before_controllers`` runs once the apiserver is ready and before the controller manager starts: CRDs
    installed there are known to the garbage collector from its first sync (it rediscovers only every 30 s).
    Each component gets ``timeout_s`` to become healthy; on any failure everything already started is stopped
    and the error carries the failing component's log tail.
    """
    began = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    plane = Plane(workdir.resolve(), f"https://127.0.0.1:{free_port()}")
    pki.write_pki(plane.pki)
    kubeconfig.write(plane.kubeconfig, plane.server, plane.pki / "ca.crt",
                     kubeconfig.Credentials(cert=plane.pki / "admin.crt", key=plane.pki / "admin.key"))
    try:
        etcd_url = _start_etcd(plane, bin_dir, timeout_s)
        _start_apiserver(plane, bin_dir, etcd_url, timeout_s)
        if before_controllers:
            hook_began = time.monotonic()
            before_controllers(plane)
            plane.timings["before-controllers"] = time.monotonic() - hook_began
        _start_controller_manager(plane, bin_dir, controllers, timeout_s)
    except BaseException:
        plane.stop()
        raise
    plane.timings["total"] = time.monotonic() - began
    plane.save()
    return plane
