"""Training progress as people read it: one line per snapshot, the same in `kubetune train` and `kubetune run`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def progress_text(progress: Mapping[str, Any]) -> str:
    """``step 120/600 (20%)  loss 0.812  eta 2m10s`` from a progress snapshot (``status.progress`` keys).

    Missing fields are left out (a snapshot before the first logged loss has no loss).
    """
    total = progress.get("totalSteps")
    parts = [f"step {progress.get('step', 0)}/{total if total is not None else '?'}"]
    if progress.get("percent") is not None:
        parts[-1] += f" ({progress['percent']}%)"
    if progress.get("loss") is not None:
        parts.append(f"loss {progress['loss']}")
    eta = progress.get("etaSeconds")
    if eta is not None:
        parts.append(f"eta {eta // 60}m{eta % 60:02d}s")
    return "  ".join(parts)
