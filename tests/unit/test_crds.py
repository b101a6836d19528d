"""Generated CRDs: committed files match the types, and schemas are structural."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.crd import KINDS, all_crds, crd
from kubetune.cli.crds import file_name, render

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("index", range(len(KINDS)), ids=[k.name for k in KINDS])
def test_committed_crd_matches_types(index):
    committed = (ROOT / "crds" / file_name(index)).read_text()
    assert committed == render(index), "crds/ drifted from the API types: run `make crds` and commit"


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


@pytest.mark.parametrize("index", range(len(KINDS)), ids=[k.name for k in KINDS])
def test_schema_is_structural(index):
    schema = crd(KINDS[index])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "title", "$defs"):
            assert forbidden not in node or path.endswith(".properties"), f"{forbidden} at {path}"
        if path.endswith(".properties") or path.endswith("x-kubernetes-validations"):
            continue
        if "properties" in node or "items" in node:
            assert node.get("type") in ("object", "array"), f"untyped object/array at {path}"
        if node.get("type") == "array":
            assert "items" in node, f"array without items at {path}"


def test_preserve_unknown_fields_only_where_free_form():
    text = yaml.safe_dump(all_crds())
    paths = [p for crd_obj in all_crds() for p, n in _walk(crd_obj)
             if n.get("x-kubernetes-preserve-unknown-fields")]
    assert all(p.endswith((".extraArgs", ".affinity")) for p in paths), paths
    assert "x-kubernetes-preserve-unknown-fields" in text


def test_names_columns_and_subresources():
    by_kind = {c["spec"]["names"]["kind"]: c for c in all_crds()}
    assert by_kind["FineTuneJob"]["spec"]["names"]["shortNames"] == ["ftj"]
    assert by_kind["ModelExport"]["spec"]["names"]["shortNames"] == ["mexp"]
    assert by_kind["InferenceService"]["spec"]["names"]["shortNames"] == ["ktsvc"]
    for c in by_kind.values():
        assert c["spec"]["names"]["categories"] == ["kubetune"]
        assert c["spec"]["versions"][0]["subresources"]["status"] == {}
    ftj_cols = [c["name"] for c in by_kind["FineTuneJob"]["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert ftj_cols[:8] == ["Stage", "Method", "Model", "Phase", "Progress", "Loss", "Score", "Age"]
    scale = by_kind["InferenceService"]["spec"]["versions"][0]["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.replicas"


def test_conditions_are_a_list_map():
    schema = crd(KINDS[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) >= {"type", "status", "reason", "lastTransitionTime"}


def test_cli_prints_three_crds():
    out = subprocess.run([sys.executable, "-m", "kubetune.cli.main", "crds"], capture_output=True, text=True,
                         check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["spec"]["names"]["kind"] for d in docs] == ["FineTuneJob", "ModelExport", "InferenceService"]


def test_validate_cli_reports_paths_and_fails(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: kubetune.io/v1alpha1\nkind: ModelExport\nmetadata: {name: x}\n"
                   "spec:\n  source: {fineTuneJobRef: {name: a}}\n  dtype: float8\n  output: {uri: pvc://m/}\n")
    proc = subprocess.run([sys.executable, "-m", "kubetune.cli.main", "validate", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{bad}:6: spec.dtype:" in proc.stderr
