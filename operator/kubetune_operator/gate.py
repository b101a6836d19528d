"""The promotion gate of a ModelExport: export a FineTuneJob's output only when its score is high enough (pure).

``spec.source.minScore`` compares the FineTuneJob's main benchmark score (``status.evaluation.score``, percent).
A missing score waits (the runtime may not have reported it yet); a lower score is final, as the source's spec and
its scores never change: the export fails with ``ScoreBelowMinimum`` and a message a pipeline can show.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.conditions import Reason
from kubetune_operator.resolve import Ref, Unresolved


def score_gate(min_score: float | None, ref: Ref, body: dict[str, Any] | None) -> Unresolved | None:
    """None when the source may be exported, else why not (waiting for a score, or a score below the minimum)."""
    if min_score is None:
        return None
    kind, name = ref
    evaluation = ((body or {}).get("status") or {}).get("evaluation") or {}
    score = evaluation.get("score")
    if score is None:
        return Unresolved(Reason.WAITING_FOR_SCORE, f"waiting for {kind} {name!r} to report status.evaluation.score "
                          f"(spec.source.minScore is {min_score:g}); the FineTuneJob needs spec.evaluation", ref)
    if float(score) < min_score:
        task = evaluation.get("task") or "its main benchmark"
        return Unresolved(Reason.SCORE_BELOW_MINIMUM, f"{kind} {name!r} scored {float(score):g} on {task}, below "
                          f"spec.source.minScore {min_score:g}: the run regressed and is not exported", ref)
    return None
