"""pytest fixtures for the real control plane; tests/conftest.py re-exports them for every test directory.

- ``cluster`` (session): one etcd + kube-apiserver + kube-controller-manager per pytest session, with crds/ and
  the Kubeflow PyTorchJob CRD installed and Established. Yields a :class:`tests.support.cluster.Cluster`.
- ``namespace`` (function): a fresh namespace per test, deleted afterwards (without waiting).
- ``object_store`` (session, started only when a test asks for it): a SeaweedFS S3 endpoint
  (:mod:`tests.support.objectstore`).
- ``tracking_server`` (session, started only when a test asks for it): an MLflow tracking server on sqlite
  (:mod:`tests.support.tracking`).
- ``node`` (session, started only when a test asks for it): a real one-node cluster where pods run, with the
  Kubeflow training-operator and the kubetune operator deployed from manifests/ (:mod:`tests.support.node`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster, start_cluster
from tests.support.node import Node, machine_lock, start_node
from tests.support.objectstore import ObjectStore, start_object_store
from tests.support.tracking import TrackingServer, start_tracking_server


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    handle = start_cluster(tmp_path_factory.mktemp("controlplane"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = cluster.create_namespace(f"t-{slug}-{abs(hash(request.node.nodeid)) % 10**6}")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with machine_lock():
        handle = start_node(tmp_path_factory.mktemp("node"))
        try:
            yield handle
        finally:
            handle.stop()


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with start_object_store(tmp_path_factory.mktemp("s3")) as store:
        yield store


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    with start_tracking_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server
