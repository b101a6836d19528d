"""What an object's status says before it runs: its spec refused, or one of its inputs unresolved; the same in the
cluster and in `kubetune run`.

Each kind shows waiting on its own condition and phase: a FineTuneJob's ``InputsReady`` (phase Pending), a
ModelExport's ``SourceReady`` (WaitingForSource), an InferenceService's ``ModelResolved`` (WaitingForModel, and
not Ready). An input that can never resolve (:attr:`Unresolved.final`) fails the object instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.api.conditions import ConditionType as T
from kubetune.api.conditions import Reason as R
from kubetune.config.files import ConfigError
from kubetune.lifecycle.conditions import Cond, Verdict
from kubetune.lifecycle.sources import Unresolved

ACCEPTED = Cond(T.ACCEPTED, True, R.SPEC_VALID, "spec is valid")
# accepted, and waiting for its turn (`kubetune run` runs one object after the other)
QUEUED = Verdict("Pending", R.PENDING, "queued", [ACCEPTED])


@dataclass(frozen=True)
class Rejection:
    """Why a schema-valid spec cannot run: a CamelCase reason, and a message naming the field.

    A final rejection fails the object. One that is not final (in the cluster, a child's name taken by an object
    the resource does not own) keeps it Pending: the operator looks again on its next resync.
    """

    reason: str
    message: str
    final: bool = True


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


def config_rejection(exc: Exception) -> Rejection:
    """Why a spec is refused, from what its mapping (a ConfigError with field paths) or a URI rejected."""
    if isinstance(exc, ConfigError):
        paths = [e.path for e in exc.errors]
        if any(p.startswith("spec.extraArgs") for p in paths):
            reason = R.INVALID_EXTRA_ARGS
        elif any(p.rsplit(".", 1)[-1] == "template" for p in paths):
            reason = R.UNKNOWN_TEMPLATE
        else:
            reason = R.INVALID_SPEC
        return Rejection(reason, "; ".join(f"{e.path}: {e.message}" for e in exc.errors))
    return Rejection(R.INVALID_SPEC, str(exc))


def rejected_status(kind: str, rejection: Rejection) -> Verdict:
    """The status of a ``kind`` object whose spec cannot run: Accepted=False (and, for a service, not Ready)."""
    conds = [Cond(T.ACCEPTED, False, rejection.reason, rejection.message)]
    if GATES[kind].serves:
        conds.append(Cond(T.READY, False, rejection.reason, rejection.message))
    return Verdict("Failed" if rejection.final else "Pending", rejection.reason, rejection.message, conds)


def input_status(kind: str, rejection: Rejection | None, unresolved: Unresolved | None) -> Verdict | None:
    """The status a refused spec or an unusable input gives a ``kind`` object; None when its inputs let it run."""
    if rejection is not None:
        return rejected_status(kind, rejection)
    if unresolved is not None:
        return unresolved_status(kind, unresolved)
    return None


def blocking(unresolved: Unresolved | None, started: bool) -> Unresolved | None:
    """The unresolved input that holds the object back: once its run started, only a final one does (an input
    vanishing later does not stop a running job)."""
    if unresolved is None or (started and not unresolved.final):
        return None
    return unresolved
