"""Base model for every API type: camelCase on the wire, unknown keys rejected, CEL rules attached.

Cross-field rules are written once, in CEL. The same expression goes into the CRD's
``x-kubernetes-validations`` (enforced by the apiserver) and is evaluated here by a Python CEL interpreter for
local runs, so a CR rejected by the cluster is rejected by ``kubetune validate`` and ``kubetune run`` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import celpy
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


@dataclass(frozen=True)
class CelRule:
    """One ``x-kubernetes-validations`` entry.

    ``rule`` is evaluated with ``self`` bound to the object (camelCase keys, defaults applied, unset optional
    fields absent). ``field_path`` (a JSON path relative to the object, such as ``.quantization``) names the field
    the message is about; the apiserver reports it and so do local errors. Transition rules (those that mention
    ``oldSelf``) are only enforced by the apiserver, since a local file has no previous version.
    """

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    @property
    def is_transition(self) -> bool:
        return "oldSelf" in self.rule

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


@cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_holds(rule: str, obj: dict[str, Any]) -> bool:
    """Evaluate a CEL rule against a JSON-shaped object, as the apiserver would."""
    result = _program(rule).evaluate({"self": celpy.json_to_cel(obj)})
    if isinstance(result, Exception):  # celpy returns evaluation errors as values
        raise result
    return bool(result)


class KubeModel(BaseModel):
    """Base of all API types. Subclasses list their cross-field rules in ``cel_rules``."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> Any:
        schema = handler(core_schema)
        if cls.cel_rules:
            target = handler.resolve_ref_schema(schema)
            target["x-kubernetes-validations"] = [r.to_schema() for r in cls.cel_rules]
        return schema

    def wire(self) -> dict[str, Any]:
        """The object as it is stored by the apiserver: camelCase keys, unset optional fields omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @model_validator(mode="after")
    def _check_cel_rules(self) -> KubeModel:
        rules = [r for r in type(self).cel_rules if not r.is_transition]
        if not rules:
            return self
        wire = self.wire()
        for rule in rules:
            if not cel_holds(rule.rule, wire):
                # field_path travels in the error context; kubetune.api.errors joins it onto the location.
                raise PydanticCustomError(
                    "cel_rule", "{message}", {"message": rule.message, "field_path": rule.field_path or ""}
                )
        return self
