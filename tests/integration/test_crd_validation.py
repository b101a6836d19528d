"""The apiserver itself rejects invalid CRs with a message naming the field: the same cases the pydantic layer
rejects (tests/unit/test_api_validation.py INVALID), so both layers are proven to agree."""

from __future__ import annotations

import copy
import itertools

import pytest

from kubetune.api.common import URI_PATTERN
from tests.builders import make_finetunejob, make_inferenceservice, make_modelexport
from tests.unit.test_api_validation import INVALID

pytestmark = pytest.mark.cluster

# Where the apiserver words a built-in check (enum, pattern, required) differently from pydantic, the fragment
# it must print instead; the field path is always the same.
APISERVER_WORDING = {
    "unknown-pref-loss": 'supported values: "sigmoid", "hinge", "ipo", "orpo", "simpo"',
    "bad-uri-scheme": f"should match '{URI_PATTERN}'",
    "pvc-uri-climbs-out": f"should match '{URI_PATTERN}'",
    "pvc-claim-dotdot": f"should match '{URI_PATTERN}'",
    "unknown-stage": 'supported values: "pt", "sft", "rm", "ppo", "dpo", "kto", "grpo"',
    "quant-bits": 'supported values: "4", "8"',
    "missing-output": "Required value",
    "misspelt-field": "strict decoding error: unknown field",  # the did-you-mean hint is kubetune's own
    "misspelt-nested-list-field": "strict decoding error: unknown field",
}


def _named(obj: dict, name: str, namespace: str) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"] = {"name": name, "namespace": namespace}
    return obj


def test_enough_cases_reach_the_apiserver():
    assert len(INVALID) >= 15


@pytest.mark.parametrize(("case", "obj", "path", "fragment"), INVALID, ids=[c[0] for c in INVALID])
def test_apiserver_rejects_invalid_cr_naming_the_field(cluster, case, obj, path, fragment):
    result = cluster.kubectl("create", "-n", "default", "-f", "-", input=_named(obj, case, "default"), check=False)
    message = " ".join(result.stderr.split())
    assert result.returncode != 0, f"apiserver accepted {case}: {result.stdout}"
    assert "Error from server" in message or "is invalid" in message, message  # a server answer, not client-side
    assert f"{path}:" in message or f'"{path}"' in message, f"field {path} not named: {message}"
    assert APISERVER_WORDING.get(case, fragment) in message, message
    kind = obj["kind"].lower() + ".kubetune.io"
    assert cluster.kubectl("get", kind, case, "-n", "default", check=False).returncode != 0, "object was stored"


def test_apiserver_accepts_what_pydantic_accepts(cluster):
    """Every stage x method combination and each builder default: the CEL rules reject no valid object."""
    stages, methods = ["pt", "sft", "rm", "ppo", "dpo", "kto", "grpo"], ["full", "freeze", "lora", "qlora"]
    objs = [make_finetunejob(stage=s, method=m) for s, m in itertools.product(stages, methods)]
    objs += [make_modelexport(), make_inferenceservice()]
    docs = [_named(o, f"valid-{i}", "default") for i, o in enumerate(objs)]
    result = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=docs, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("created (server dry run)") == len(docs)
