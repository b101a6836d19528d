"""Small builders for test objects: make_finetunejob(stage="dpo") returns a valid CR dict to tweak."""

from __future__ import annotations

import copy
from typing import Any


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Return base with patch merged in; a value of None in patch deletes the key."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_finetunejob(name: str = "ftj", stage: str = "sft", method: str = "lora", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "hf://org/tiny"},
            "datasets": [{"uri": "file:///data/train.jsonl", "format": "alpaca",
                          "ranking": stage in ("rm", "dpo")}],
            "stage": stage,
            "method": method,
            "output": {"uri": "file:///tmp/out/"},
        },
    }
    if method == "qlora":
        body["spec"]["quantization"] = {"bits": 4}
    if stage == "ppo":
        body["spec"]["ppo"] = {"rewardModel": {"uri": "hf://org/reward"}}
    if stage == "grpo":
        body["spec"]["grpo"] = {"rewards": ["exact_match"]}
    if stage == "kto":
        body["spec"]["datasets"][0]["columns"] = {"ktoTag": "label"}
        body["spec"]["training"] = {"perDeviceBatchSize": 2}  # KTO estimates its KL term within a batch
    body["spec"] = deep_merge(body["spec"], spec)
    return body


def make_modelexport(name: str = "mexp", **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "ModelExport",
        "metadata": {"name": name},
        "spec": {"source": {"fineTuneJobRef": {"name": "ftj"}}, "output": {"uri": "file:///tmp/out/"}},
    }
    body["spec"] = deep_merge(body["spec"], spec)
    return body


def make_inferenceservice(name: str = "svc", **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"model": {"uri": "hf://org/tiny"}, "engine": {"backend": "hf"},
                 "resources": {"gpusPerReplica": 0}},
    }
    body["spec"] = deep_merge(body["spec"], spec)
    return body
