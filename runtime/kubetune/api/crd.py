"""Generate apiextensions.k8s.io/v1 CRDs from the pydantic types.

The API types are the single source of truth; ``crds/`` holds this module's output and a test fails on drift.
pydantic's JSON Schema is turned into a *structural* OpenAPI v3 schema: ``$ref``s inlined, ``anyOf [X, null]``
collapsed to ``X`` + ``nullable``, titles dropped, free-form maps marked ``x-kubernetes-preserve-unknown-fields``,
objects with defaulted sub-objects given ``default: {}`` so CEL rules can always reach their fields.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport

GROUP = "kubetune.io"
VERSION = "v1alpha1"
CATEGORY = "kubetune"


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def to_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


AGE = Column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    model: type[BaseModel]
    plural: str
    short_names: tuple[str, ...]
    columns: tuple[Column, ...]
    immutable_spec: bool
    mutable_paths: tuple[str, ...] = ()
    scale: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.__name__


KINDS: tuple[Kind, ...] = (
    Kind(
        FineTuneJob,
        "finetunejobs",
        ("ftj",),
        (
            Column("Stage", ".spec.stage"),
            Column("Method", ".spec.method"),
            Column("Model", ".spec.model.uri"),
            Column("Phase", ".status.phase"),
            Column("Progress", ".status.progress.percent", "integer", "Percent of optimizer steps done."),
            Column("Loss", ".status.progress.loss"),
            Column("Score", ".status.evaluation.score", "number", "Main benchmark score (percent)."),
            AGE,
            Column("Output", ".status.output.uri", priority=1),
            Column("Reason", ".status.reason", priority=1),
        ),
        immutable_spec=True,
        mutable_paths=("runPolicy.suspend",),
    ),
    Kind(
        ModelExport,
        "modelexports",
        ("mexp",),
        (
            Column("Source", ".spec.source.fineTuneJobRef.name"),
            Column("Merge", ".spec.merge", "boolean"),
            Column("Quant", ".spec.quantization.method"),
            Column("Phase", ".status.phase"),
            AGE,
            Column("Output", ".status.output.uri", priority=1),
            Column("Reason", ".status.reason", priority=1),
        ),
        immutable_spec=True,
    ),
    Kind(
        InferenceService,
        "inferenceservices",
        ("ktsvc",),
        (
            Column("Model", ".spec.servedModelName"),
            Column("URL", ".status.url"),
            Column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
            Column("Replicas", ".status.readyReplicas", "integer"),
            AGE,
            Column("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1),
        ),
        immutable_spec=False,
        scale={
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    ),
)

_DROP_KEYS = {"title", "additionalProperties", "discriminator"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Recursively turn one pydantic JSON-schema node into a structural OpenAPI node."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        target.update(node)  # sibling keys (description, default) win over the definition's
        return _structural(target, defs)
    if "anyOf" in node:
        node = _collapse_any_of(node, defs)
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
    if node.get("additionalProperties") is True or node.get("x-kubernetes-preserve-unknown-fields"):
        node["type"] = "object"
        node["x-kubernetes-preserve-unknown-fields"] = True
        node.pop("additionalProperties", None)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {k: _structural(v, defs) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "default" and value is None:
            continue
        else:
            out[key] = value
    return out


def _collapse_any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """anyOf [X, null] -> X + nullable; int | str (quantities) -> x-kubernetes-int-or-string."""
    branches = node.pop("anyOf")
    nullable = any(b.get("type") == "null" for b in branches)
    rest = [b for b in branches if b.get("type") != "null"]
    if len(rest) == 1:
        inner = rest[0]
        if "$ref" in inner:
            inner = copy.deepcopy(defs[inner["$ref"].split("/")[-1]])
        merged = {**inner, **{k: v for k, v in node.items() if k != "default" or v is not None}}
        if "anyOf" in merged:
            merged = _collapse_any_of(merged, defs)
    elif {b.get("type") for b in rest} == {"integer", "string"}:
        merged = {**node, "x-kubernetes-int-or-string": True}
    else:
        raise ValueError(f"cannot express anyOf {branches} structurally")
    if nullable:
        merged["nullable"] = True
    return merged


def _defaulted_objects(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Give fields with a default_factory their default, so the apiserver fills them like pydantic does."""
    for name, info in model.model_fields.items():
        alias = info.alias or name
        prop = schema.get("properties", {}).get(alias)
        if prop is None:
            continue
        annotation = info.annotation
        if info.default_factory is not None:
            value = info.default_factory()  # type: ignore[call-arg]
            if isinstance(value, BaseModel):
                prop["default"] = {}
                _defaulted_objects(type(value), prop)
            else:
                prop["default"] = value
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _defaulted_objects(annotation, prop)
        else:
            for arg in getattr(annotation, "__args__", ()):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    _defaulted_objects(arg, prop.get("items", prop))


def _presence_equal(path: str, optional: bool) -> str:
    if not optional:
        return f"self.{path} == oldSelf.{path}"
    return f"(has(self.{path}) == has(oldSelf.{path}) && (!has(self.{path}) || self.{path} == oldSelf.{path}))"


def immutability_rule(spec_schema: dict[str, Any], mutable_paths: tuple[str, ...]) -> str:
    """A transition rule on spec that allows changes only under ``mutable_paths``."""
    required = set(spec_schema.get("required", []))
    terms = []
    for prop, sub in spec_schema["properties"].items():
        optional = prop not in required and "default" not in sub
        inner = [p.split(".", 1)[1] for p in mutable_paths if p.split(".", 1)[0] == prop]
        if not inner:
            terms.append(_presence_equal(prop, optional))
            continue
        for child in sub["properties"]:
            if child in inner:
                continue
            child_optional = child not in set(sub.get("required", [])) and "default" not in sub["properties"][child]
            terms.append(_presence_equal(f"{prop}.{child}", child_optional))
    return " && ".join(terms)


def openapi_schema(kind: Kind) -> dict[str, Any]:
    raw = kind.model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _structural(raw, defs)
    _defaulted_objects(kind.model, schema)
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "description": props["apiVersion"]["description"]}
    props["kind"] = {"type": "string", "description": props["kind"]["description"]}
    props["metadata"] = {"type": "object"}
    props["status"].pop("nullable", None)
    schema["required"] = ["spec"]
    if kind.immutable_spec:
        rule = immutability_rule(props["spec"], kind.mutable_paths)
        allowed = " except " + ", ".join(kind.mutable_paths) if kind.mutable_paths else ""
        props["spec"].setdefault("x-kubernetes-validations", []).append(
            {"rule": rule, "message": f"spec is immutable{allowed}: create a new {kind.name} instead"}
        )
    return schema


def crd(kind: Kind) -> dict[str, Any]:
    """The full CustomResourceDefinition for one kind."""
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale:
        subresources["scale"] = dict(kind.scale)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.name,
                "listKind": f"{kind.name}List",
                "plural": kind.plural,
                "singular": kind.name.lower(),
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": [c.to_schema() for c in kind.columns],
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                }
            ],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    return [crd(k) for k in KINDS]


def kind_for(kind_name: str) -> Kind | None:
    return next((k for k in KINDS if k.name == kind_name), None)
