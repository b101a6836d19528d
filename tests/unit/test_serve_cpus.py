"""The CPU budget of the serving process, from fake cgroup v1/v2 trees and a given affinity."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.serve.cpus import cpu_budget, cpu_quota


def _tree(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(proc_cgroup)
    return root, proc


V2_POD = "0::/kubepods/pod1/ctr\n"
V1_POD = "12:memory:/kubepods/pod1/ctr\n4:cpu,cpuacct:/kubepods/pod1/ctr\n3:cpuset:/kubepods/pod1/ctr\n"

# (case id, /proc/self/cgroup, files under the cgroup root, affinity, expected cpus, expected quota)
CASES = [
    ("v2-limit-2", V2_POD, {"kubepods/pod1/ctr/cpu.max": "200000 100000\n"}, 16, 2, 2.0),
    ("v2-fraction-rounds-down", V2_POD, {"kubepods/pod1/ctr/cpu.max": "150000 100000"}, 16, 1, 1.5),
    ("v2-below-one-is-one", V2_POD, {"kubepods/pod1/ctr/cpu.max": "50000 100000"}, 16, 1, 0.5),
    ("v2-unlimited-uses-cpuset", V2_POD, {"kubepods/pod1/ctr/cpu.max": "max 100000"}, 6, 6, None),
    ("v2-parent-limit-bounds-child", V2_POD,
     {"kubepods/pod1/ctr/cpu.max": "max 100000", "kubepods/pod1/cpu.max": "300000 100000"}, 16, 3, 3.0),
    ("v2-cpuset-smaller-than-quota", V2_POD, {"kubepods/pod1/ctr/cpu.max": "800000 100000"}, 4, 4, 8.0),
    ("v2-container-namespace-root", "0::/\n", {"cpu.max": "400000 100000"}, 64, 4, 4.0),
    ("v2-garbage-is-no-quota", V2_POD, {"kubepods/pod1/ctr/cpu.max": "lots\n"}, 3, 3, None),
    ("v1-cfs-quota", V1_POD, {"cpu,cpuacct/kubepods/pod1/ctr/cpu.cfs_quota_us": "250000",
                              "cpu,cpuacct/kubepods/pod1/ctr/cpu.cfs_period_us": "100000"}, 32, 2, 2.5),
    ("v1-unlimited", V1_POD, {"cpu,cpuacct/kubepods/pod1/ctr/cpu.cfs_quota_us": "-1",
                              "cpu,cpuacct/kubepods/pod1/ctr/cpu.cfs_period_us": "100000"}, 2, 2, None),
    ("v1-mounted-at-the-container", V1_POD, {"cpu,cpuacct/cpu.cfs_quota_us": "100000",
                                             "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 8, 1, 1.0),
    ("hybrid-v2-in-unified", "1:name=systemd:/\n0::/job\n", {"unified/job/cpu.max": "200000 100000"}, 8, 2, 2.0),
    ("no-cgroup-files", V2_POD, {}, 5, 5, None),
]


@pytest.mark.parametrize(("proc", "files", "affinity", "cpus", "quota"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_budget_from_cgroup_and_affinity(tmp_path, proc, files, affinity, cpus, quota):
    root, proc_file = _tree(tmp_path, proc, files)
    budget = cpu_budget(root, proc_file, affinity=affinity)
    assert budget.cpus == cpus
    assert budget.quota == quota == cpu_quota(root, proc_file)
    assert budget.affinity == affinity


def test_reason_names_the_limit_that_applies(tmp_path):
    root, proc = _tree(tmp_path, V2_POD, {"kubepods/pod1/ctr/cpu.max": "150000 100000"})
    assert cpu_budget(root, proc, affinity=8).reason == "cgroup CPU quota 1.5 (of 8 CPUs in the cpuset)"
    root, proc = _tree(tmp_path / "b", V2_POD, {})
    assert cpu_budget(root, proc, affinity=3).reason == "cpuset of 3 CPUs, no CPU quota"


def test_unreadable_proc_file_means_no_quota(tmp_path):
    budget = cpu_budget(tmp_path / "none", tmp_path / "missing", affinity=2)
    assert (budget.cpus, budget.quota) == (2, None)


def test_this_process_has_a_budget_within_its_affinity():
    import os

    budget = cpu_budget()
    assert 1 <= budget.cpus <= len(os.sched_getaffinity(0))
