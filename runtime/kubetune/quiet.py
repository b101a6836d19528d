"""Keep library deprecation warnings that are not ours to act on out of what people read (torch-free).

Each silenced warning is listed with the library that raises it and why it is not ours to act on, and is matched
by its message and module, so a new warning (or this one from our own code) still shows.
"""

from __future__ import annotations

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


def silence_known_deprecations() -> None:
    """Install an ``ignore`` filter for each of :data:`KNOWN_DEPRECATIONS` (idempotent; other warnings stay)."""
    for known in KNOWN_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=known.message, category=known.category, module=known.module)

