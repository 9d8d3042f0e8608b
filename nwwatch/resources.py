"""The memory and CPUs this process may use: the machine's figures, lowered to the limits the
kernel's control groups put on it.

The shipped systemd unit caps the service at ``MemoryMax=8G`` / ``MemoryHigh=6G``, and a
container may be started with ``--memory`` or ``--cpus``; /proc/meminfo and the affinity mask
describe the whole machine and know nothing of these. ``[inference] streams = "auto"`` sizes
itself from them (:mod:`nwwatch.service.streammemory`, :mod:`nwwatch.service.inference`), and
a tomogram is refused when it cannot fit (:func:`nwwatch.volume.memory.tomogram_memory`, for
the service, replay and ``nwwatch train --volume``: hence this module's place below every
layer, on the standard library alone). It reads the limits: cgroup v2 (``memory.max``,
``memory.high``, ``memory.current``, ``cpu.max``) and v1 (``memory.limit_in_bytes``,
``memory.usage_in_bytes``, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), from the
process's own group up to the hierarchy's root, the tightest level winning (a parent's limit
binds its children).

Anything unreadable (no cgroup file system, another OS, a file the sandbox hides) means "no
limit known": the callers then use the machine's figures, as before.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

#: v1 writes "no limit" as the largest page-aligned int64, v2 as "max"; anything at least this
#: large is no limit.
_UNLIMITED_BYTES = 2**60


@dataclass(frozen=True)
class Limit:
    """A limit and where it was read (for the log: ``value`` and the file that set it)."""

    value: float
    source: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_groups(proc_self: Path) -> list[tuple[str, str]]:
    """(controllers, path) of each line of ``/proc/self/cgroup``: ``"0::/a/b"`` is the v2
    group, ``"4:memory:/a"`` a v1 one ("" controllers for v2)."""
    text = _read(proc_self / "cgroup")
    out = []
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((parts[1], parts[2]))
    return out


def _levels(mount: Path, group: str) -> list[Path]:
    """The group's directory under ``mount`` and each parent up to ``mount``. Inside a
    container the group path is that of the host's namespace and the mount shows only the
    container's own group: then the mount itself is the group."""
    leaf = mount / group.lstrip("/")
    if not leaf.is_dir():
        leaf = mount
    levels = [leaf]
    while levels[-1] != mount and mount in levels[-1].parents:
        levels.append(levels[-1].parent)
    return levels


def _group_dirs(cgroup_root: Path, proc_self: Path, controller: str) -> list[tuple[Path, bool]]:
    """Directories to read for ``controller`` ("memory" or "cpu"), leaf first, each with
    whether it is a v2 group."""
    found: list[tuple[Path, bool]] = []
    for controllers, group in _own_groups(proc_self):
        if controllers == "":
            # v2: the unified hierarchy at the root (pure v2) or under "unified" (hybrid).
            for mount in (cgroup_root, cgroup_root / "unified"):
                if (mount / "cgroup.controllers").is_file():
                    found += [(d, True) for d in _levels(mount, group)]
                    break
        elif controller in controllers.split(","):
            for name in (controllers, controller):  # "cpu,cpuacct" may be mounted either way
                mount = cgroup_root / name
                if mount.is_dir():
                    found += [(d, False) for d in _levels(mount, group)]
                    break
    return found


def _bytes(text: str | None) -> int | None:
    if text is None or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value < _UNLIMITED_BYTES else None


def _reclaimable_bytes(group: Path, v2: bool) -> int:
    """Inactive file cache of the group (the kernel reclaims it before it fails an
    allocation; 0 when memory.stat cannot be read)."""
    key = "inactive_file" if v2 else "total_inactive_file"
    for line in (_read(group / "memory.stat") or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _bytes(value) or 0
    return 0


#: The cgroup v2 limits that bound what the process should allocate: ``memory.max``, at which
#: the kernel's OOM killer ends it, and ``memory.high``, above which the kernel throttles it.
V2_LIMITS = ("memory.max", "memory.high")
#: The v2 limit at which the process is killed (v1 has only that one, memory.limit_in_bytes).
V2_KILL_LIMITS = ("memory.max",)


def memory_headroom(cgroup_root: Path = Path("/sys/fs/cgroup"),
                    proc_self: Path = Path("/proc/self"),
                    v2_limits: tuple[str, ...] = V2_LIMITS) -> Limit | None:
    """Bytes this process's control groups still allow it to allocate: at each level with a
    limit, the limit (v2: the lowest of the files ``v2_limits``, by default ``memory.max``
    and ``memory.high``, above which the kernel throttles) less what the group uses now, its
    inactive file cache excepted; the smallest over the levels. None: no limit found."""
    best: Limit | None = None
    for group, v2 in _group_dirs(cgroup_root, proc_self, "memory"):
        if v2:
            limits = [(_bytes(_read(group / name)), name) for name in v2_limits]
            used = _bytes(_read(group / "memory.current"))
        else:
            limits = [(_bytes(_read(group / "memory.limit_in_bytes")), "memory.limit_in_bytes")]
            used = _bytes(_read(group / "memory.usage_in_bytes"))
        known = [(value, name) for value, name in limits if value is not None]
        if not known:
            continue
        limit, name = min(known)
        in_use = max(0, (used or 0) - _reclaimable_bytes(group, v2))
        headroom = max(0, limit - in_use)
        if best is None or headroom < best.value:
            best = Limit(headroom, str(group / name))
    return best


def cpu_limit(cgroup_root: Path = Path("/sys/fs/cgroup"),
              proc_self: Path = Path("/proc/self")) -> Limit | None:
    """CPUs' worth of time this process's control groups allow (quota / period, e.g. 1.5
    for ``CPUQuota=150%``); the smallest over the levels. None: no quota found."""
    best: Limit | None = None
    for group, v2 in _group_dirs(cgroup_root, proc_self, "cpu"):
        if v2:
            name = "cpu.max"
            fields = (_read(group / name) or "").split()
            quota_text, period_text = (fields + ["", ""])[:2]
        else:
            name = "cpu.cfs_quota_us"
            quota_text = _read(group / name) or ""
            period_text = _read(group / "cpu.cfs_period_us") or ""
        try:
            quota, period = int(quota_text), int(period_text)
        except ValueError:  # "max", -1 or unreadable: no quota at this level
            continue
        if quota <= 0 or period <= 0:
            continue
        cpus = quota / period
        if best is None or cpus < best.value:
            best = Limit(cpus, str(group / name))
    return best


def cores_from_quota(cpus: float) -> int:
    """Threads worth running under a quota of ``cpus`` CPUs: rounded up (a quota of 1.5 keeps
    two threads busy half the time rather than leaving half a CPU unused), at least 1."""
    return max(1, math.ceil(cpus - 1e-9))


def usable_cores_limit() -> Limit:
    """CPUs this process may run on (its affinity mask, else the machine's count), at most
    what its control groups' CPU quota keeps busy (:func:`cpu_limit`,
    :func:`cores_from_quota`), and where that figure comes from."""
    try:
        cores = Limit(len(os.sched_getaffinity(0)), "affinity")
    except (AttributeError, OSError):
        cores = Limit(os.cpu_count() or 1, "cpu count")
    quota = cpu_limit()
    if quota is not None and cores_from_quota(quota.value) < cores.value:
        return Limit(cores_from_quota(quota.value), quota.source)
    return cores


def usable_cores() -> int:
    """The number of :func:`usable_cores_limit`."""
    return int(usable_cores_limit().value)


def available_memory(v2_limits: tuple[str, ...] = V2_LIMITS) -> Limit | None:
    """Bytes available to new allocations now, and what set the figure: ``MemAvailable`` of
    /proc/meminfo (else the machine's physical memory, ``os.sysconf``), lowered to what this
    process's control groups still allow (:func:`memory_headroom` with ``v2_limits``;
    :data:`V2_KILL_LIMITS`: what it may allocate before it is killed). None when nothing can
    be read."""
    machine: Limit | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    machine = Limit(int(line.split()[1]) * 1024, "/proc/meminfo")  # kB
                    break
    except (OSError, ValueError, IndexError):
        pass
    if machine is None:
        try:
            machine = Limit(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
                            "physical memory")
        except (AttributeError, OSError, ValueError):
            pass
    known = [limit for limit in (machine, memory_headroom(v2_limits=v2_limits))
             if limit is not None]
    return min(known, key=lambda limit: limit.value) if known else None
