"""The operator's only door to the Kubernetes API (the only module that imports ``kubernetes``).

Plain dicts in and out, REST paths built from :mod:`kubetune_operator.kinds` (no discovery), and errors sorted
into what a reconciler can act on: :class:`Transient` (retry later), :class:`Invalid` (the apiserver rejected
what was rendered) and :class:`KubeError` for the rest. Writes are server-side apply under one field manager, or
JSON merge patches of the ``status`` subresource.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from kubetune_operator.kinds import COMPONENT, EVENT, FIELD_MANAGER, Resource, resource_of

JSON = "application/json"
APPLY = "application/apply-patch+yaml"  # JSON is YAML: the client sends the dict as JSON
MERGE = "application/merge-patch+json"
log = logging.getLogger("kubetune.operator")
TRANSIENT_STATUS = {401, 408, 409, 429, 500, 502, 503, 504}
SCHEMA_ERROR = "field not declared in schema"  # server-side apply's words for an unknown field


class KubeError(RuntimeError):
    """An API call failed; ``status`` is the HTTP status (0 when no response came back)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class Transient(KubeError):
    """Worth retrying: the apiserver is busy or unreachable, a write conflicted, or a token expired."""


class Invalid(KubeError):
    """The apiserver rejected an object (422, 400, or an apply with a field its schema lacks): the message says
    which field."""


@dataclass(frozen=True)
class Credentials:
    """How to reach the apiserver, for clients other than this module's (kopf's own watcher)."""

    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    certificate_path: str | None
    private_key_path: str | None


def _error(exc: Exception, what: str) -> KubeError:
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        detail = exc.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(exc.body or "{}").get("message") or detail
        message = f"{what}: {status} {detail}".strip()
        if status in (400, 422) or SCHEMA_ERROR in detail:
            # What the apiserver refused to decode or validate (a field its schema lacks in a pass-through block
            # such as affinity) fails the same way on every retry: report it instead of retrying forever.
            return Invalid(message, status)
        if status in TRANSIENT_STATUS:
            return Transient(message, status)
        return KubeError(message, status)
    return Transient(f"{what}: {exc}")


class Kube:
    """A thread-safe client for the few calls the operator makes."""

    def __init__(self, api_client: Any):
        self.api = api_client

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """From a kubeconfig file, else in-cluster config, else the default kubeconfig ($KUBECONFIG, ~/.kube)."""
        config = kubernetes.client.Configuration()
        if kubeconfig or context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=config)
        else:
            kubernetes.config.load_incluster_config(client_configuration=config)
        return cls(kubernetes.client.ApiClient(configuration=config))

    def credentials(self) -> Credentials:
        config = self.api.configuration
        header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
        token = header.split(" ", 1)[-1] if header else None
        return Credentials(config.host, config.ssl_ca_cert, not config.verify_ssl, token, config.cert_file,
                           config.key_file)

    def request(self, method: str, path: str, *, body: Any = None, query: list[tuple[str, str]] | None = None,
                content_type: str = JSON, what: str = "") -> dict[str, Any]:
        """One API call; returns the decoded JSON body."""
        headers = {"Accept": JSON, "Content-Type": content_type}
        params = self.api.param_serialize(method=method, resource_path=path, query_params=query or [],
                                          header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(*params, _request_timeout=(10, 60))
            response.read()
            if not 200 <= response.status <= 299:
                raise ApiException.from_response(http_resp=response, body=response.data.decode(), data=None)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _error(exc, what or f"{method} {path}") from exc
        return json.loads(response.data or b"{}")

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", resource.path(namespace, name), what=f"get {resource.kind} {name}")
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, resource: Resource, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        found = self.request("GET", resource.path(namespace), query=query, what=f"list {resource.plural}")
        return list(found.get("items") or [])

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as ``kubetune-operator``, taking over fields another manager changed (force)."""
        resource = resource_of(manifest)
        meta = manifest["metadata"]
        return self.request(
            "PATCH", resource.path(meta["namespace"], meta["name"]), body=manifest, content_type=APPLY,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            what=f"apply {manifest['kind']} {meta['name']}",
        )

    def patch_status(self, resource: Resource, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch of ``status`` (keys set to None are removed)."""
        return self.request(
            "PATCH", resource.path(namespace, name, "status"), body={"status": status}, content_type=MERGE,
            query=[("fieldManager", FIELD_MANAGER)], what=f"patch {resource.kind} {name} status",
        )

    def post_event(self, obj: dict[str, Any], *, type_: str, reason: str, message: str, now: str) -> None:
        """A core/v1 Event about ``obj`` (best effort: losing an Event never fails a reconcile)."""
        meta = obj["metadata"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": socket.gethostname()[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.request("POST", EVENT.path(meta["namespace"]), body=event, what=f"post event {reason}")
        except KubeError as exc:
            log.warning("%s", exc)
