"""Keep library deprecation warnings that are not ours to act on out of what people read (torch-free).

Each silenced warning is listed with the library that raises it and why it is not ours to act on, and is matched
by its message and module, so a new warning (or this one from our own code) still shows.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownWarning:
    message: str  # regex matched against the start of the message
    category: type[Warning]
    module: str  # regex of the module the warning is attributed to
    why: str


KNOWN_DEPRECATIONS: tuple[KnownWarning, ...] = (
    KnownWarning(r"`is_gradient_checkpointing` is deprecated", FutureWarning, r"transformers\.modeling_utils",
                 "peft's PeftModel reads the old attribute on every wrap; nothing in kubetune reads it"),
)


# Loggers whose WARNING records are not ours to act on: logger name -> (message start, why).
KNOWN_LOG_WARNINGS: dict[str, tuple[str, str]] = {
    "bitsandbytes.backends.cpu.ops": (
        "Failed to load CPU gemm_4bit_forward", "bitsandbytes (installed with galore-torch) looks for an optional CPU "
        "4-bit kernel whenever peft imports it; kubetune never runs 4-bit layers on a CPU"),
}


class _DropKnown(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def silence_known_deprecations() -> None:
    """Install an ``ignore`` filter for each of :data:`KNOWN_DEPRECATIONS` and a log filter for each of
    :data:`KNOWN_LOG_WARNINGS` (idempotent; other warnings stay)."""
    for known in KNOWN_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=known.message, category=known.category, module=known.module)
    for name, (start, _why) in KNOWN_LOG_WARNINGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(start))

