"""Wait-probes read objects the operator has not finished writing: a missing status or field means "not yet"."""

from __future__ import annotations

from tests.integration.test_operator_chaining import condition
from tests.support.operator import condition_of, dig, wait_for

FRESH = {"apiVersion": "kubetune.io/v1alpha1", "kind": "ModelExport", "metadata": {"name": "early"}}


def test_probes_treat_missing_objects_status_and_fields_as_not_yet():
    assert condition(FRESH, "SourceReady") is None
    assert condition(None, "SourceReady") is None
    assert condition({**FRESH, "status": {"conditions": None}}, "SourceReady") is None
    assert condition_of({**FRESH, "status": {}}, "Accepted") is None
    assert dig(FRESH, "status", "resolvedSource") is None
    assert dig({"spec": {"containers": []}}, "spec", "containers", 0, "image") is None
    assert dig({"a": [{"b": 1}]}, "a", 0, "b") == 1


def test_wait_for_keeps_polling_until_the_status_appears():
    versions = iter([None, FRESH, {**FRESH, "status": {}},
                     {**FRESH, "status": {"conditions": [{"type": "SourceReady", "status": "False",
                                                          "reason": "SourceNotFound"}]}}])
    assert wait_for(lambda: condition(next(versions), "SourceReady") == ("False", "SourceNotFound"),
                    interval_s=0) is True
