"""Integration fixtures: the operator from manifests/, running in-process as its own ServiceAccount."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.operator import RunningOperator, install_manifests, start_operator
from tests.support.serving import Endpoint, Trained, serve, setup_vllm, train_adapters, vllm_env


class OperatorHandle:
    """The session's operator; ``restart()`` stops it and starts a fresh process-equivalent (new registry,
    new kopf state) against the same cluster."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.current: RunningOperator | None = None

    def start(self) -> None:
        self.current = start_operator(self.cluster)

    def stop(self) -> None:
        if self.current:
            self.current.stop()
            self.current = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def operator_installed(cluster: Cluster) -> Cluster:
    install_manifests(cluster)
    return cluster


@pytest.fixture(scope="module")
def operator(operator_installed: Cluster) -> Iterator[OperatorHandle]:
    """One operator per test module, so modules that do not ask for it never see it reconcile their objects."""
    handle = OperatorHandle(operator_installed)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def trained_adapters(tmp_path_factory) -> Trained:
    """A tiny head_dim-64 base model and two LoRA adapters trained by `kubetune run` (FineTuneJobs sea, land)."""
    return train_adapters(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def hf_endpoint(trained_adapters, tmp_path_factory) -> Iterator[Endpoint]:
    with serve(trained_adapters, "hf", tmp_path_factory.mktemp("hf")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def vllm_endpoint(trained_adapters, tmp_path_factory) -> Iterator[Endpoint]:
    """One vLLM server for the whole session: it takes minutes to start on a CPU."""
    env = vllm_env(setup_vllm())
    with serve(trained_adapters, "vllm", tmp_path_factory.mktemp("vllm"), env=env) as endpoint:
        yield endpoint
