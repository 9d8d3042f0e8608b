"""The cores and memory the service may use, under cgroup limits: fake v1 and v2 trees in
tmp_path, built as the kernel lays them out (docs/service.md, "Memory with streams")."""

from __future__ import annotations

from pathlib import Path

import pytest

from nwwatch import resources
from nwwatch.resources import Limit, cores_from_quota, cpu_limit, memory_headroom

GIB = 2**30
V1_NO_LIMIT = "9223372036854771712"  # what v1 writes for "no limit"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _proc(tmp_path: Path, lines: list[str]) -> Path:
    proc = tmp_path / "proc_self"
    _write(proc / "cgroup", "\n".join(lines))
    return proc


def _v2(tmp_path: Path, group: str = "system.slice/nwwatch.service") -> tuple[Path, Path, Path]:
    """A pure v2 tree with the process in ``group``: (root, the group's dir, /proc/self)."""
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpu memory pids")
    leaf = root / group
    leaf.mkdir(parents=True)
    return root, leaf, _proc(tmp_path, [f"0::/{group}"])


def test_systemd_memory_max_and_high_bound_the_headroom(tmp_path):
    """The shipped unit's MemoryMax=8G / MemoryHigh=6G: the lower (high) binds, less what
    the group uses apart from its inactive file cache."""
    root, leaf, proc = _v2(tmp_path)
    _write(leaf / "memory.max", str(8 * GIB))
    _write(leaf / "memory.high", str(6 * GIB))
    _write(leaf / "memory.current", str(2 * GIB))
    _write(leaf / "memory.stat", f"anon {GIB}\ninactive_file {GIB // 2}\nactive_file 0")
    got = memory_headroom(root, proc)
    assert got == Limit(6 * GIB - (2 * GIB - GIB // 2), str(leaf / "memory.high"))


def test_the_kill_limit_alone_is_memory_max(tmp_path):
    """What the process may allocate before the OOM killer ends it (the tomogram memory
    check): memory.max, not memory.high (above which the kernel throttles, but kills nothing)."""
    root, leaf, proc = _v2(tmp_path)
    _write(leaf / "memory.max", str(8 * GIB))
    _write(leaf / "memory.high", str(6 * GIB))
    _write(leaf / "memory.current", str(2 * GIB))
    got = memory_headroom(root, proc, v2_limits=resources.V2_KILL_LIMITS)
    assert got == Limit(6 * GIB, str(leaf / "memory.max"))


def test_a_parent_limit_binds_its_children_and_max_means_none(tmp_path):
    root, leaf, proc = _v2(tmp_path, "machine.slice/box/inner")
    _write(leaf / "memory.max", "max")
    _write(leaf / "memory.current", str(GIB))
    parent = leaf.parent
    _write(parent / "memory.max", str(3 * GIB))
    _write(parent / "memory.current", str(2 * GIB))
    _write(root / "machine.slice" / "memory.max", str(16 * GIB))
    _write(root / "machine.slice" / "memory.current", str(4 * GIB))
    assert memory_headroom(root, proc) == Limit(GIB, str(parent / "memory.max"))
    (parent / "memory.max").write_text("max\n")
    slice_max = root / "machine.slice" / "memory.max"
    assert memory_headroom(root, proc) == Limit(12 * GIB, str(slice_max))
    (root / "machine.slice" / "memory.max").write_text("max\n")
    assert memory_headroom(root, proc) is None


def test_v2_cpu_max_quota(tmp_path):
    root, leaf, proc = _v2(tmp_path)
    _write(leaf / "cpu.max", "150000 100000")
    _write(leaf.parent / "cpu.max", "max 100000")
    assert cpu_limit(root, proc) == Limit(1.5, str(leaf / "cpu.max"))
    assert cores_from_quota(1.5) == 2 and cores_from_quota(1.0) == 1 and cores_from_quota(0.2) == 1
    (leaf / "cpu.max").write_text("max 100000\n")
    assert cpu_limit(root, proc) is None


def test_v1_hierarchy_with_a_docker_memory_and_cpus_limit(tmp_path):
    """cgroup v1 as docker lays it out (``--memory 4g --cpus 2``), cpu and cpuacct mounted
    together."""
    root = tmp_path / "cgroup"
    group = "docker/abc123"
    proc = _proc(tmp_path, [f"4:memory:/{group}", f"3:cpu,cpuacct:/{group}", "0::/"])
    mem = root / "memory" / group
    _write(mem / "memory.limit_in_bytes", str(4 * GIB))
    _write(mem / "memory.usage_in_bytes", str(3 * GIB))
    _write(mem / "memory.stat", f"cache {GIB}\ntotal_inactive_file {GIB}")
    _write(root / "memory" / "memory.limit_in_bytes", V1_NO_LIMIT)
    cpu = root / "cpu,cpuacct" / group
    _write(cpu / "cpu.cfs_quota_us", "200000")
    _write(cpu / "cpu.cfs_period_us", "100000")
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1")
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    assert memory_headroom(root, proc) == Limit(2 * GIB, str(mem / "memory.limit_in_bytes"))
    assert cpu_limit(root, proc) == Limit(2.0, str(cpu / "cpu.cfs_quota_us"))


def test_inside_a_container_the_mount_is_the_group(tmp_path):
    """/proc/self/cgroup names the host's path; the container's mount shows only its own
    group, at the mount's root."""
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "memory")
    _write(root / "memory.max", str(2 * GIB))
    _write(root / "memory.current", str(GIB // 4))
    proc = _proc(tmp_path, ["0::/kubepods/burstable/pod1/xyz"])
    assert memory_headroom(root, proc) == Limit(2 * GIB - GIB // 4, str(root / "memory.max"))


@pytest.mark.parametrize("cgroup_text", [None, "", "garbage without colons", "0::/missing"])
def test_nothing_readable_means_no_limit(tmp_path, cgroup_text):
    root = tmp_path / "cgroup"
    root.mkdir()
    proc = tmp_path / "proc_self"
    proc.mkdir()
    if cgroup_text is not None:
        (proc / "cgroup").write_text(cgroup_text)
    assert memory_headroom(root, proc) is None
    assert cpu_limit(root, proc) is None


def test_unreadable_values_are_skipped_not_fatal(tmp_path):
    root, leaf, proc = _v2(tmp_path)
    _write(leaf / "memory.max", "lots")
    _write(leaf / "cpu.max", "")
    _write(leaf.parent / "memory.max", str(GIB))  # no memory.current there: nothing in use
    assert memory_headroom(root, proc) == Limit(GIB, str(leaf.parent / "memory.max"))
    assert cpu_limit(root, proc) is None


def test_the_process_figures_take_the_tighter_of_machine_and_cgroup(monkeypatch):
    """available_memory / usable_cores_limit: the cgroup figure wins when it is lower, and the
    result names its source."""
    monkeypatch.setattr(resources, "memory_headroom", lambda **_: Limit(123 * 2**20, "unit"))
    assert resources.available_memory() == Limit(123 * 2**20, "unit")
    monkeypatch.setattr(resources, "memory_headroom", lambda **_: Limit(2**62, "huge"))
    assert resources.available_memory().source == "/proc/meminfo"
    monkeypatch.setattr(resources, "cpu_limit", lambda: Limit(0.5, "quota"))
    assert resources.usable_cores_limit() == Limit(1, "quota")
    assert resources.usable_cores() == 1
    monkeypatch.setattr(resources, "cpu_limit", lambda: None)
    assert resources.usable_cores_limit().source == "affinity"


def test_this_machine_reads_without_error():
    """On the test machine itself: whatever its cgroups say, the readers return a value or
    None, never raise."""
    for value in (memory_headroom(), cpu_limit()):
        assert value is None or value.value >= 0
    assert resources.usable_cores() >= 1
