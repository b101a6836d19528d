"""Kueue's controller manager as a local process against a test control plane, with its webhooks served on loopback.

Kueue (built from its Go module by ``hack/build-platform.sh kueue``) runs with its own configuration file. Its
webhooks are reachable the way a cluster reaches them, only by URL instead of through a Service: the CRDs and the
webhook configurations are read from the Kueue module in the Go module cache, and each ``clientConfig.service`` is
replaced by ``https://127.0.0.1:<port><path>``. The serving certificate is issued here for both the in-cluster name
Kueue's certificate manager checks (``kueue-webhook-service.kueue-system.svc``) and 127.0.0.1; it is stored in the
Secret Kueue manages and written to its certificate directory (in a cluster the kubelet mounts that Secret there).
Only the webhooks for Kueue's own kinds and batch/v1 Jobs are registered: the only integration enabled.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import os
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.cluster import Cluster
from tests.support.gotools import build_tool
from tests.support.processes import Process, free_port, https_get, spawn, stop, wait_until

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "hack" / "platform" / "kueue"
NAMESPACE = "kueue-system"
SERVICE = "kueue-webhook-service"
SECRET = "kueue-webhook-server-cert"
# CRDs served through Kueue's conversion webhook (config/components/crd/patches/webhook_in_*.yaml)
CONVERTED = ("localqueues", "clusterqueues", "workloads", "cohorts", "multikueueclusters")
API = "kueue.x-k8s.io/v1beta2"


def module_dir() -> Path:
    out = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kueue"], cwd=MODULE_DIR,
                         stdout=subprocess.PIPE, text=True, check=True,
                         env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}).stdout.strip()
    return Path(out)


def crds(module: Path, webhook_url: str) -> list[dict[str, Any]]:
    """Kueue's CRDs; those it converts get a conversion webhook at ``webhook_url``."""
    docs = []
    for path in sorted((module / "config" / "components" / "crd" / "bases").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc["spec"]["names"]["plural"] in CONVERTED:
            doc["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"], "clientConfig": {"url": f"{webhook_url}/convert"}}}
        docs.append(doc)
    return docs


def _wanted(path: str) -> bool:
    return "-kueue-x-k8s-io-" in path or path.endswith("-batch-v1-job")


def webhook_configurations(module: Path, webhook_url: str) -> list[dict[str, Any]]:
    """Kueue's (validating and mutating) webhook configurations for its kinds and Jobs, called by URL."""
    out = []
    for doc in yaml.safe_load_all((module / "config" / "components" / "webhook" / "manifests.yaml").read_text()):
        if not doc:
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["name"] = f"kueue-{doc['metadata']['name']}"  # the names Kueue injects its CA into
        hooks = []
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            if _wanted(path):
                hook["clientConfig"] = {"url": f"{webhook_url}{path}"}
                hooks.append(hook)
        doc["webhooks"] = hooks
        out.append(doc)
    return out


@dataclass(frozen=True)
class ServingCert:
    ca_cert: bytes
    ca_key: bytes  # PKCS#1, as Kueue's certificate manager reads it
    cert: bytes
    key: bytes


def serving_cert() -> ServingCert:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kueue-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          # Kueue's certificate manager checks its CA for this name too, and replaces a CA without it
          .add_extension(x509.SubjectAlternativeName([x509.DNSName("kueue-ca")]), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names = [x509.DNSName(f"{SERVICE}.{NAMESPACE}.svc"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVICE)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))

    def pem_key(k: rsa.RSAPrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())

    return ServingCert(ca.public_bytes(serialization.Encoding.PEM), pem_key(ca_key),
                       cert.public_bytes(serialization.Encoding.PEM), pem_key(key))


def configuration(webhook_port: int, health_port: int, cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": True, "webhookServiceName": SERVICE, "webhookSecretName": SECRET},
        "integrations": {"frameworks": ["batch/job"]},
        "featureGates": {"VisibilityOnDemand": False},
    }


def _wait_established(cluster: Cluster, names: list[str], timeout_s: float = 60.0) -> None:
    """`kubectl wait` fails outright on a CRD the apiserver has not given conditions yet: ask again until then."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                                 *[f"crd/{n}" for n in names], check=False)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kueue's CRDs not Established: {result.stderr.strip()}")
        time.sleep(0.5)


@dataclass
class RunningKueue:
    process: Process
    cluster: Cluster
    webhooks: list[dict[str, Any]]

    def stop(self) -> None:
        """Unregister the webhooks first (they would refuse every Job once nobody serves them), then stop."""
        for hook in self.webhooks:
            self.cluster.kubectl("delete", hook["kind"].lower(), hook["metadata"]["name"], "--ignore-not-found",
                                 check=False)
        stop(self.process)


def start_kueue(cluster: Cluster, workdir: Path, timeout_s: float = 180.0) -> RunningKueue:
    """Install Kueue's CRDs and webhooks into ``cluster`` and start its controller manager; wait until ready."""
    binary, module = build_tool("kueue"), module_dir()
    webhook_port, health_port = free_port(), free_port()
    url = f"https://127.0.0.1:{webhook_port}"
    workdir.mkdir(parents=True, exist_ok=True)
    cert_dir = workdir / "serving-certs"
    cert_dir.mkdir(exist_ok=True)
    certs = serving_cert()
    (cert_dir / "tls.crt").write_bytes(certs.cert)
    (cert_dir / "tls.key").write_bytes(certs.key)
    (cert_dir / "ca.crt").write_bytes(certs.ca_cert)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=crds(module, url))
    _wait_established(cluster, [f"{plural}.kueue.x-k8s.io" for plural in (*CONVERTED, "resourceflavors")])
    cluster.create_namespace(NAMESPACE)
    cluster.kubectl("create", "secret", "generic", SECRET, "-n", NAMESPACE,
                    f"--from-file=ca.crt={cert_dir / 'ca.crt'}", f"--from-literal=ca.key={certs.ca_key.decode()}",
                    f"--from-file=tls.crt={cert_dir / 'tls.crt'}", f"--from-file=tls.key={cert_dir / 'tls.key'}")
    hooks = webhook_configurations(module, url)
    cluster.apply(hooks)
    config = workdir / "kueue-config.yaml"
    config.write_text(yaml.safe_dump(configuration(webhook_port, health_port, cert_dir)))
    process = spawn("kueue", [str(binary), f"--config={config}", f"--kubeconfig={cluster.kubeconfig}",
                              "--zap-log-level=2"], workdir / "logs")
    running = RunningKueue(process, cluster, hooks)
    try:
        plain = ssl.create_default_context()
        wait_until(process, lambda: https_get(f"http://127.0.0.1:{health_port}/readyz", plain)[0] == 200,
                   timeout_s, "Kueue /readyz")
    except BaseException:
        running.stop()
        raise
    return running


def resource_flavor(name: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ResourceFlavor", "metadata": {"name": name}}


def cluster_queue(name: str, flavor: str, quota: dict[str, str]) -> dict[str, Any]:
    resources = [{"name": r, "nominalQuota": q} for r, q in quota.items()]
    return {"apiVersion": API, "kind": "ClusterQueue", "metadata": {"name": name},
            "spec": {"namespaceSelector": {}, "resourceGroups": [{
                "coveredResources": list(quota), "flavors": [{"name": flavor, "resources": resources}]}]}}


def local_queue(name: str, namespace: str, cluster_queue_name: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "LocalQueue", "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue_name}}
