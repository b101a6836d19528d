"""The promotion gate of a ModelExport: export a FineTuneJob's output only when its score is high enough (pure).

``spec.source.minScore`` compares the FineTuneJob's main benchmark score (``status.evaluation.score``, percent)
with :func:`kubetune.api.evaluation.score_verdict`, the rule `kubetune run` applies too. A missing score waits;
a lower score fails the export with ``ScoreBelowMinimum``. The FineTuneJob's ``status.evaluation`` re-triggers
waiting exports (handlers), since the runtime may report it after the job succeeded.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.evaluation import score_verdict
from kubetune_operator.resolve import Ref, Unresolved


def score_gate(min_score: float | None, ref: Ref, body: dict[str, Any] | None) -> Unresolved | None:
    """None when the source may be exported, else why not (waiting for a score, or a score below the minimum)."""
    kind, name = ref
    verdict = score_verdict(min_score, kind, name, (body or {}).get("status"))
    return None if verdict is None else Unresolved(verdict[0], verdict[1], ref)
