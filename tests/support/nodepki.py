"""Certificates for the one-node cluster: the loopback plane's layout plus what a real node needs.

On top of :func:`tests.support.pki.write_pki` (CAs, admin, controller-manager, ServiceAccount keys) this writes:

- ``apiserver.crt/key`` again, now also valid for the node IP and the ``kubernetes`` Service (10.0.0.1 and its DNS
  names), because pods reach the apiserver through that Service;
- client certs ``scheduler`` (system:kube-scheduler), ``kube-proxy`` (system:kube-proxy), ``kubelet``
  (system:node:<node>, group system:nodes, as the Node authorizer expects) and ``apiserver-kubelet-client``
  (the apiserver's identity for logs/exec/port-forward on the kubelet);
- ``kubelet-serving.crt/key``: the kubelet's HTTPS cert for the node IP and name, signed by the serving CA the
  apiserver checks with ``--kubelet-certificate-authority``.
"""

from __future__ import annotations

from pathlib import Path

from tests.support import pki

SERVICE_IP = "10.0.0.1"  # first address of --service-cluster-ip-range: the `kubernetes` Service
SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")


def write_node_pki(directory: Path, node_name: str, node_ip: str) -> Path:
    """Write the full PKI for a node cluster into ``directory`` and return it."""
    pki.write_pki(directory)
    ca = _load(directory, "ca")
    client_ca = _load(directory, "client-ca")
    apiserver_sans = ("localhost", "127.0.0.1", node_ip, SERVICE_IP, *SERVICE_NAMES)
    _write(directory, "apiserver", pki.issue(ca, "kube-apiserver", server=True, sans=apiserver_sans))
    _write(directory, "scheduler", pki.issue(client_ca, "system:kube-scheduler"))
    _write(directory, "kube-proxy", pki.issue(client_ca, "system:kube-proxy"))
    _write(directory, "kubelet", pki.issue(client_ca, f"system:node:{node_name}", orgs=("system:nodes",)))
    _write(directory, "apiserver-kubelet-client",
           pki.issue(client_ca, "kube-apiserver-kubelet-client", orgs=("system:masters",)))
    _write(directory, "kubelet-serving", pki.issue(ca, node_name, server=True, sans=(node_name, node_ip)))
    return directory


def _load(directory: Path, stem: str) -> pki.Issued:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate((directory / f"{stem}.crt").read_bytes())
    return pki.Issued(key, cert)  # type: ignore[arg-type]


def _write(directory: Path, stem: str, issued: pki.Issued) -> None:
    (directory / f"{stem}.crt").write_bytes(pki.cert_pem(issued.cert))
    key = directory / f"{stem}.key"
    key.write_bytes(pki.key_pem(issued.key))
    key.chmod(0o600)
