"""Certificates and keys for a loopback control plane, made with ``cryptography``.

Layout written by :func:`write_pki` (all PEM, ECDSA P-256, PKCS#8 keys):

- ``ca.crt/key``: the serving CA; ``apiserver.crt/key``: the serving cert (SANs localhost, 127.0.0.1);
- ``client-ca.crt/key``: the CA the apiserver trusts for client certs;
  ``admin.crt/key``: CN=admin, O=system:masters; ``controller-manager.crt/key``: CN=system:kube-controller-manager;
- ``sa.key`` / ``sa.pub``: the ServiceAccount token signing key pair.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=7)


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew between processes
        .not_valid_after(now + VALIDITY)
    )


def make_ca(common_name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name, ("kubetune-test",))
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def issue(ca: Issued, common_name: str, *, orgs: tuple[str, ...] = (), server: bool = False,
          sans: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Issued:
    """A leaf certificate signed by ``ca``: serverAuth for ``sans`` (DNS names or IPs), or clientAuth with groups
    ``orgs``."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(common_name, orgs), ca.cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False, crl_sign=False,
                          content_commitment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        names = [_san(value) for value in sans]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key_pem(key))
    path.chmod(0o600)


def _write(directory: Path, stem: str, issued: Issued) -> None:
    (directory / f"{stem}.crt").write_bytes(cert_pem(issued.cert))
    _write_key(directory / f"{stem}.key", issued.key)


def write_pki(directory: Path) -> Path:
    """Write the full PKI into ``directory`` (created if needed) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca("kubetune-test-serving-ca")
    client_ca = make_ca("kubetune-test-client-ca")
    _write(directory, "ca", ca)
    _write(directory, "apiserver", issue(ca, "localhost", server=True))
    _write(directory, "client-ca", client_ca)
    _write(directory, "admin", issue(client_ca, "admin", orgs=("system:masters",)))
    _write(directory, "controller-manager", issue(client_ca, "system:kube-controller-manager"))
    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return directory
