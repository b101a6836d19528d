"""How many CPUs this process may use: the container's budget, not the node's core count.

A pod limited to 2 CPUs on a 64-core node still sees 64 cores in ``os.cpu_count()``; sizing thread pools from
that makes 64 threads share 2 CPUs of quota, and every parallel region waits for the slowest, throttled one. The
budget is the smallest of:

- the CPU bandwidth quota of this process's cgroup and of its ancestors: cgroup v2 ``cpu.max`` (``"max 100000"``
  means none), cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (``-1`` means none);
- the CPUs this process may run on (the cpuset, as ``sched_getaffinity`` reports it).

Quota is rounded down (1.5 CPUs of quota is 1 thread that never waits for the throttle), and the budget is at
least 1. Torch-free; the file system root is a parameter so tests use fake cgroup trees.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class CpuBudget:
    """``cpus`` whole CPUs, and where that number comes from (``reason``, for people)."""

    cpus: int
    reason: str
    quota: float | None = None  # CPUs of bandwidth quota (None: no quota)
    affinity: int | None = None  # CPUs in the cpuset / affinity mask (None: unknown)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ratio(quota: str | None, period: str | None) -> float | None:
    """``quota / period`` in CPUs; None for no quota (``max``, ``-1``) or text that is not a number."""
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _ancestors(cgroup: str) -> list[PurePosixPath]:
    """``/a/b`` -> [/a/b, /a, /]: a quota on any ancestor bounds this cgroup too."""
    path = PurePosixPath("/") / cgroup.lstrip("/")
    return [path, *path.parents]


def _cgroup_paths(proc_cgroup: str | None) -> tuple[str | None, str | None]:
    """(the cgroup v2 path, the cgroup v1 ``cpu`` controller path) in ``/proc/self/cgroup``."""
    v2 = v1 = None
    for line in (proc_cgroup or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _v2_quota(root: Path, cgroup: str) -> float | None:
    quotas = []
    for path in _ancestors(cgroup):
        text = _read(root / str(path).lstrip("/") / "cpu.max")
        if not text:
            continue
        fields = text.split()
        quota = _ratio(fields[0], fields[1]) if len(fields) == 2 else None
        if quota is not None:
            quotas.append(quota)
    return min(quotas, default=None)


def _v1_quota(root: Path, cgroup: str) -> float | None:
    quotas = []
    for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        base = root / mount
        if not base.is_dir():
            continue
        # inside a container the hierarchy is often mounted at the container's own cgroup, so "/" is it
        for path in [*_ancestors(cgroup), PurePosixPath("/")]:
            folder = base / str(path).lstrip("/")
            quota = _ratio(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us"))
            if quota is not None:
                quotas.append(quota)
        break
    return min(quotas, default=None)


def cpu_quota(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs of bandwidth quota of this process's cgroup (the smallest along its ancestors); None when unlimited."""
    v2, v1 = _cgroup_paths(_read(proc_cgroup))
    quotas = []
    if v2 is not None:
        quotas.append(_v2_quota(root, v2))
        quotas.append(_v2_quota(root / "unified", v2))  # hybrid hierarchy: v2 mounted beside v1
    if v1 is not None:
        quotas.append(_v1_quota(root, v1))
    return min((q for q in quotas if q is not None), default=None)


def affinity_cpus() -> int | None:
    """CPUs this process may run on (its cpuset), or None where the platform cannot say."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def cpu_budget(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup"),
               affinity: int | None = None) -> CpuBudget:
    """The whole CPUs this process may use; ``affinity`` defaults to :func:`affinity_cpus`.

    Reads the cgroup files under ``root`` and ``proc_cgroup``; never fails: unreadable files mean no quota.
    """
    quota = cpu_quota(root, proc_cgroup)
    cpus = affinity if affinity is not None else affinity_cpus()
    if cpus is None:
        cpus = os.cpu_count() or 1
    if quota is not None and math.floor(quota) < cpus:
        budget = max(1, math.floor(quota))
        return CpuBudget(budget, f"cgroup CPU quota {quota:g} (of {cpus} CPUs in the cpuset)", quota, cpus)
    if quota is not None:
        return CpuBudget(max(1, cpus), f"cpuset of {cpus} CPUs (CPU quota {quota:g})", quota, cpus)
    return CpuBudget(max(1, cpus), f"cpuset of {cpus} CPUs, no CPU quota", None, cpus)
