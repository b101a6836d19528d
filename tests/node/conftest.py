"""Node tests: a namespace per test on the one-node cluster, with the runtime identity and an API key Secret."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.node import Node

API_KEY_SECRET = ("quickstart-api-key", "key")


@pytest.fixture
def node_namespace(node: Node, request: pytest.FixtureRequest) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:30].strip("-")
    name = node.create_namespace(f"n-{slug}-{abs(hash(request.node.nodeid)) % 10**4}")
    node.kubectl("apply", "-n", name, "-f", str(node.root / "manifests" / "rbac-runtime.yaml"))
    node.kubectl("create", "secret", "generic", API_KEY_SECRET[0], "-n", name,
                 f"--from-literal={API_KEY_SECRET[1]}=sk-node-test-{abs(hash(name)) % 10**8}")
    yield name
    node.kubectl("delete", "namespace", name, "--wait=false", check=False)
