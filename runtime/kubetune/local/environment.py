"""``spec.env`` for ``kubetune run``: literal values are set while the object runs, as its pods would get them.

Values from Secrets or ConfigMaps (``valueFrom``, ``envFrom``) have nothing to read from locally: such a variable
is taken from the shell when it is set there, and the run says which ones are missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kubetune.api.common import Scheduling


@contextmanager
def spec_environment(spec: Scheduling, say: Callable[[str], None]) -> Iterator[None]:
    """Set ``spec.env``'s literal values for the duration of the block, then restore what was there."""
    saved: dict[str, str | None] = {}
    for var in spec.env or []:
        if var.value is not None:
            saved.setdefault(var.name, os.environ.get(var.name))
            os.environ[var.name] = var.value
        elif var.name not in os.environ:
            say(f"spec.env {var.name}: comes from a Secret or ConfigMap, which a local run cannot read; "
                "export it in the shell")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
