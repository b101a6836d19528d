"""The control plane's PKI and kubeconfigs have the shape kube-apiserver and kubectl expect."""

from __future__ import annotations

import ipaddress

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import kubeconfig, pki


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_serving_and_client_chains(tmp_path):
    pki.write_pki(tmp_path)
    ca, server = _cert(tmp_path / "ca.crt"), _cert(tmp_path / "apiserver.crt")
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    admin = _cert(tmp_path / "admin.crt")
    admin.verify_directly_issued_by(_cert(tmp_path / "client-ca.crt"))
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (tmp_path / "sa.key").stat().st_mode & 0o077 == 0


def test_impersonating_kubeconfig(tmp_path):
    pki.write_pki(tmp_path)
    creds = kubeconfig.Credentials(cert=tmp_path / "admin.crt", key=tmp_path / "admin.key",
                                   impersonate="system:serviceaccount:ns:sa",
                                   impersonate_groups=kubeconfig.serviceaccount_groups("ns"))
    path = kubeconfig.write(tmp_path / "k", "https://127.0.0.1:1", tmp_path / "ca.crt", creds, "ns")
    doc = yaml.safe_load(path.read_text())
    user = doc["users"][0]["user"]
    assert user["as"] == "system:serviceaccount:ns:sa" and "system:serviceaccounts:ns" in user["as-groups"]
    assert doc["contexts"][0]["context"]["namespace"] == "ns"
    assert isinstance(pki.make_ca("x").key, ec.EllipticCurvePrivateKey)
