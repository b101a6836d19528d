"""Shared fixtures: tiny models built locally from a config, never downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fixtures import (  # noqa: F401  (real control plane / node / servers, session-wide)
    cluster,
    namespace,
    node,
    object_store,
    tracking_server,
)

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tests" / "assets"


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    return ASSETS / "tokenizer"


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """Build a tiny random causal LM (llama or qwen2) into a temp dir; cached per (arch, sizes)."""
    built: dict[tuple, Path] = {}

    def make(arch: str = "llama", **sizes: int) -> Path:
        from kubetune.model.tiny import build_tiny_model

        key = (arch, tuple(sorted(sizes.items())))
        if key not in built:
            built[key] = build_tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}"), arch, **sizes)
        return built[key]

    return make


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_factory) -> Path:
    return tiny_model_factory("llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_model_factory) -> Path:
    return tiny_model_factory("qwen2")
