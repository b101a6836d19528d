"""Kubeconfig files for the loopback control plane: admin (client cert), token, or impersonating."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONTEXT = "kubetune-test"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@dataclass(frozen=True)
class Credentials:
    """How a kubeconfig user authenticates: a client certificate pair or a bearer token, optionally impersonating."""

    cert: Path | None = None
    key: Path | None = None
    token: str | None = None
    impersonate: str | None = None
    impersonate_groups: tuple[str, ...] = ()

    def to_user(self) -> dict[str, Any]:
        user: dict[str, Any] = {}
        if self.cert and self.key:
            user["client-certificate-data"] = _b64(self.cert)
            user["client-key-data"] = _b64(self.key)
        if self.token:
            user["token"] = self.token
        if self.impersonate:
            user["as"] = self.impersonate
            if self.impersonate_groups:
                user["as-groups"] = list(self.impersonate_groups)
        return user


def render(server: str, ca: Path, credentials: Credentials, namespace: str | None = None) -> dict[str, Any]:
    """A one-cluster, one-user, one-context kubeconfig document."""
    context: dict[str, Any] = {"cluster": CONTEXT, "user": CONTEXT}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [{"name": CONTEXT, "user": credentials.to_user()}],
        "contexts": [{"name": CONTEXT, "context": context}],
        "current-context": CONTEXT,
    }


def write(path: Path, server: str, ca: Path, credentials: Credentials, namespace: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(render(server, ca, credentials, namespace), sort_keys=False))
    path.chmod(0o600)
    return path


def serviceaccount_groups(namespace: str) -> tuple[str, ...]:
    """The groups the apiserver gives a ServiceAccount token, for impersonating one faithfully."""
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")
