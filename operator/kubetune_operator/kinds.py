"""The resources the operator reads and writes, as data: API paths, label keys and the field manager."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "kubetune.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "kubetune-operator"
COMPONENT = "kubetune-operator"

MANAGED_BY = "app.kubernetes.io/managed-by"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SPEC_HASH = "kubetune.io/spec-hash"


@dataclass(frozen=True)
class Resource:
    """One API resource: enough to build its REST path without discovery."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """REST path: /api/v1/... for the core group, /apis/<group>/<version>/... otherwise."""
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


FINETUNEJOB = Resource(API_VERSION, "FineTuneJob", "finetunejobs")
MODELEXPORT = Resource(API_VERSION, "ModelExport", "modelexports")
INFERENCESERVICE = Resource(API_VERSION, "InferenceService", "inferenceservices")
PYTORCHJOB = Resource("kubeflow.org/v1", "PyTorchJob", "pytorchjobs")
JOB = Resource("batch/v1", "Job", "jobs")
DEPLOYMENT = Resource("apps/v1", "Deployment", "deployments")
SERVICE = Resource("v1", "Service", "services")
CONFIGMAP = Resource("v1", "ConfigMap", "configmaps")
EVENT = Resource("v1", "Event", "events")

BY_KIND: dict[str, Resource] = {
    r.kind: r for r in (FINETUNEJOB, MODELEXPORT, INFERENCESERVICE, PYTORCHJOB, JOB, DEPLOYMENT, SERVICE, CONFIGMAP,
                        EVENT)
}
PARENTS = (FINETUNEJOB, MODELEXPORT, INFERENCESERVICE)


def owner_label(kind: str) -> str:
    """The label every child carries: ``kubetune.io/finetunejob=<name>`` and so on."""
    return f"{GROUP}/{kind.lower()}"


def resource_of(manifest: dict) -> Resource:
    """The Resource of a rendered manifest (by kind); KeyError for kinds the operator never writes."""
    return BY_KIND[manifest["kind"]]
