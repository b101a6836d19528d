"""Platform tools built from published Go modules by ``hack/build-platform.sh`` (cached outside the clone)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "build-platform.sh"


def build_tool(tool: str) -> Path:
    """Build (or reuse) ``kstatus`` or ``kueue``; returns the binary's path (the script's last stdout line)."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), tool], stdout=subprocess.PIPE, text=True, check=True)
    return Path(proc.stdout.strip().splitlines()[-1])


def kstatus(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """kstatus health of each object, computed by sigs.k8s.io/cli-utils' kstatus library itself.

    One ``{"kind", "name", "status", "message"}`` per object, status one of InProgress, Current, Failed,
    Terminating, NotFound, Unknown.
    """
    proc = subprocess.run([str(build_tool("kstatus"))], input=json.dumps(objects), capture_output=True, text=True,
                          check=False, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"kstatus-compute failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)
