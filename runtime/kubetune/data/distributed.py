"""Run dataset preparation once: rank 0 (or the first rank of each node) works while the others wait."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _dist() -> Any:
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def is_main_process(local: bool = False) -> bool:
    """Rank 0, or local rank 0 when ``local`` (one per node)."""
    dist = _dist()
    if dist is None:
        return True
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 if local else dist.get_rank() == 0


@contextmanager
def main_process_first(local: bool = False) -> Iterator[bool]:
    """The main process runs the body first; the others enter it after the main one left it (and then find the
    cached result). Yields whether this process is the main one. A no-op without torch.distributed."""
    dist = _dist()
    main = is_main_process(local)
    if dist is not None and not main:
        dist.barrier()
    try:
        yield main
    finally:
        if dist is not None and main:
            dist.barrier()
