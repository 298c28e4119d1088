"""A container's memory as the kernel counts it: its cgroup's charge, like `docker stats`.

The kernel charges a container's cgroup for all its processes' memory, page cache
included, and its memory limit and OOM killer act on that charge. `docker stats` shows the
charge minus the inactive file cache (the first thing the kernel reclaims), and so does
this module:

    cgroup v2: memory.current        - inactive_file       (memory.stat)
    cgroup v1: memory.usage_in_bytes - total_inactive_file (memory.stat, hierarchical)

A container is found from its main pid (docker's State.Pid) through /proc/<pid>/cgroup:
the `0::` line on v2, the line of the `memory` controller on v1. That costs three small
file reads per container and no scan of /proc. Which version is mounted is read from the
mount: `cgroup.controllers` at its top means v2 (unified); a `memory/` directory means v1
(also on hybrid hosts, where a v2 tree without the memory controller sits at `unified/`).

Paths in /proc/<pid>/cgroup are relative to the cgroup namespace of the process reading
it, and a cgroup file system shows the root of the namespace it was mounted in: so the
reader must run in the namespace where `cgroup_root` was mounted (true on a host and in
the e2e sandbox, whose systemd mounts its own hierarchies). A pid whose cgroup lies outside
the reader's namespace ("/.." paths) has no readable memory: None.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_ROOT = Path("/proc")
V1, V2 = 1, 2
# Files of the cgroup and the key of memory.stat to leave out, by version.
USAGE_FILE = {V1: "memory.usage_in_bytes", V2: "memory.current"}
INACTIVE_FILE_KEY = {V1: "total_inactive_file", V2: "inactive_file"}
# Errors that mean the process or its cgroup went away while being read.
GONE = {errno.ENOENT, errno.ESRCH, errno.ENODEV}


class CgroupUnavailable(Exception):
    """No cgroup memory controller is mounted where it was looked for."""


def cgroup_version(cgroup_root: Path = CGROUP_ROOT) -> int:
    """2 on a unified (v2) mount, 1 where the v1 memory controller is mounted."""
    if (cgroup_root / "cgroup.controllers").is_file():
        return V2
    if (cgroup_root / "memory").is_dir():
        return V1
    raise CgroupUnavailable(
        f"no cgroup memory controller under {cgroup_root}: neither cgroup.controllers "
        "(cgroup v2) nor memory/ (cgroup v1)"
    )


def memory_cgroup(pid: int, version: int, cgroup_root: Path = CGROUP_ROOT,
                  proc_root: Path = PROC_ROOT) -> Path | None:
    """The directory of `pid`'s memory cgroup; None if the process is gone or its cgroup
    is not visible from here."""
    text = _read(proc_root / str(pid) / "cgroup") if pid > 0 else None
    if text is None:
        return None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if (version == V2 and controllers == "") or (
            version == V1 and "memory" in controllers.split(",")
        ):
            return _under(cgroup_root if version == V2 else cgroup_root / "memory", path)
    return None


def cgroup_memory(directory: Path, version: int) -> int | None:
    """Bytes charged to the cgroup in `directory`, inactive file cache left out; None if
    the cgroup is gone (or is a root cgroup, which has no usage file on v2)."""
    usage = _read(directory / USAGE_FILE[version])
    stat = _read(directory / "memory.stat")
    if usage is None or stat is None:
        return None
    charged = int(usage)
    inactive = _stat_value(stat, INACTIVE_FILE_KEY[version])
    # As docker stats: leave the cache out only when it is less than the whole charge.
    return charged - inactive if inactive < charged else charged


def containers_memory(pids: Iterable[int], cgroup_root: Path = CGROUP_ROOT,
                      proc_root: Path = PROC_ROOT) -> dict[int, int]:
    """{pid: bytes} for the containers of these main pids; those gone are left out.
    CgroupUnavailable if no memory controller is mounted at `cgroup_root`."""
    return ContainersMemory(cgroup_root, proc_root)(pids)


class ContainersMemory:
    """`containers_memory` for a caller that reads every few seconds: a main pid's cgroup
    is looked up once, since a container's process never leaves its cgroup, so each
    reading after the first costs two file reads per container instead of three."""

    def __init__(self, cgroup_root: Path = CGROUP_ROOT, proc_root: Path = PROC_ROOT):
        self.cgroup_root, self.proc_root = cgroup_root, proc_root
        self._cgroups: dict[int, Path] = {}  # pid -> its memory cgroup, as last read

    def __call__(self, pids: Iterable[int]) -> dict[int, int]:
        version = cgroup_version(self.cgroup_root)
        cgroups: dict[int, Path] = {}
        result: dict[int, int] = {}
        for pid in pids:
            # A pid whose cgroup is gone (the pid reused?) is looked up afresh next time.
            directory = self._cgroups.get(pid) or memory_cgroup(
                pid, version, self.cgroup_root, self.proc_root)
            memory = cgroup_memory(directory, version) if directory else None
            if directory is not None and memory is not None:
                cgroups[pid], result[pid] = directory, memory
        self._cgroups = cgroups
        return result


def _under(mount: Path, path: str) -> Path | None:
    parts = [part for part in path.split("/") if part]
    if ".." in parts:
        return None  # outside this cgroup namespace
    return mount.joinpath(*parts)


def _stat_value(stat: str, key: str) -> int:
    for line in stat.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _read(path: Path) -> str | None:
    # os.open and os.read rather than Path.read_text: the agent reads two of these small
    # files per container every tick, and a text file object costs three times the read.
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in GONE:
            return None
        raise
    return b"".join(chunks).decode()
