"""What an object's status says while one of its inputs is unresolved, the same in the cluster and in `kubetune run`.

Each kind shows waiting on its own condition and phase: a FineTuneJob's ``InputsReady`` (phase Pending), a
ModelExport's ``SourceReady`` (WaitingForSource), an InferenceService's ``ModelResolved`` (WaitingForModel, and
not Ready). An input that can never resolve (:attr:`Unresolved.final`) fails the object instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import Reason as R
from kubetune.lifecycle.conditions import Cond, Verdict
from kubetune.lifecycle.sources import Unresolved

ACCEPTED = Cond(T.ACCEPTED, True, R.SPEC_VALID, "spec is valid")


@dataclass(frozen=True)
class InputsGate:
    """How one kind shows that it waits for its inputs."""

    condition: T
    waiting_phase: str
    serves: bool = False  # an InferenceService also reports Ready=False; a run reports Failed=True when final


GATES: dict[str, InputsGate] = {
    "FineTuneJob": InputsGate(T.INPUTS_READY, "Pending"),
    "ModelExport": InputsGate(T.SOURCE_READY, "WaitingForSource"),
    "InferenceService": InputsGate(T.MODEL_RESOLVED, "WaitingForModel", serves=True),
}


def unresolved_status(kind: str, src: Unresolved) -> Verdict:
    """The status of an accepted ``kind`` object whose input ``src`` is not usable (yet)."""
    gate = GATES[kind]
    conds = [ACCEPTED, Cond(gate.condition, False, src.reason, src.message)]
    if gate.serves:
        conds.append(Cond(T.READY, False, src.reason, src.message))
    elif src.final:
        conds.append(Cond(T.FAILED, True, src.reason, src.message))
    return Verdict("Failed" if src.final else gate.waiting_phase, src.reason, src.message, conds)
