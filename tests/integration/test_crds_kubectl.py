"""The generated CRDs as kubectl users meet them: examples apply, columns print, categories and explain work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubetune.api.crd import KINDS

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
API_VERSION = "kubetune.io/v1alpha1"


def example_crs() -> list[tuple[str, dict]]:
    """Every kubetune CR under examples/ (any depth, any number of documents per file), with its file."""
    found = []
    for path in sorted((ROOT / "examples").rglob("*")):
        if path.suffix not in (".yaml", ".yml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("apiVersion") == API_VERSION:
                found.append((f"{path.relative_to(ROOT)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


EXAMPLES = example_crs()


def test_examples_cover_every_kind():
    assert {doc["kind"] for _, doc in EXAMPLES} == {k.name for k in KINDS}


@pytest.mark.parametrize("doc", [d for _, d in EXAMPLES], ids=[i for i, _ in EXAMPLES])
def test_example_applies_and_reads_back(cluster, namespace, doc):
    doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    cluster.apply(doc)
    stored = cluster.get(doc["kind"].lower() + ".kubetune.io", doc["metadata"]["name"], namespace)
    assert stored["metadata"]["generation"] == 1
    for key, value in doc["spec"].items():  # everything written comes back; the apiserver only adds defaults
        assert _contains(stored["spec"][key], value), f"spec.{key}: sent {value!r}, stored {stored['spec'][key]!r}"


def _contains(stored, sent) -> bool:
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(k in stored and _contains(stored[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(map(_contains, stored, sent))
    return stored == sent or (isinstance(sent, (int, float)) and float(stored) == float(sent))


@pytest.fixture(scope="module")
def examples_ns(cluster):
    """All examples applied into one namespace, for listing."""
    name = cluster.create_namespace("kubectl-listing")
    cluster.apply([{**d, "metadata": {**d["metadata"], "namespace": name}} for _, d in EXAMPLES])
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_get_prints_printer_columns(cluster, examples_ns):
    out = cluster.kubectl("get", "finetunejobs,modelexports,inferenceservices.kubetune.io", "-n", examples_ns).stdout
    headers = [line.split() for line in out.splitlines() if line.startswith("NAME")]
    assert headers == [["NAME", *(c.name.upper() for c in kind.columns if not c.priority)] for kind in KINDS]
    assert "support-sft" in out and "sft" in out and "lora" in out and "hf://Qwen/Qwen2.5-7B-Instruct" in out
    wide = cluster.kubectl("get", "finetunejobs", "-n", examples_ns, "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-2:] == ["OUTPUT", "REASON"]


def test_category_lists_all_kinds(cluster, examples_ns):
    out = cluster.kubectl("get", "kubetune", "-n", examples_ns, "-o", "json").stdout
    kinds = {item["kind"] for item in json.loads(out)["items"]}
    assert kinds == {"FineTuneJob", "ModelExport", "InferenceService"}
    for short in ("ftj", "mexp", "ktsvc"):
        assert cluster.kubectl("get", short, "-n", examples_ns, "-o", "name").stdout.strip()


def test_explain_prints_field_descriptions(cluster):
    from kubetune.api.finetunejob import LoraSpec

    out = cluster.kubectl("explain", "finetunejob.spec.lora").stdout
    assert "FIELDS:" in out
    for name, info in LoraSpec.model_fields.items():
        wire = info.alias or name
        assert wire in out, f"{wire} missing from kubectl explain"
        assert info.description and info.description.split(".")[0][:40] in " ".join(out.split()), wire
