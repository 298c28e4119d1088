"""The agent's memory reading before it read cgroups: the RSS of each container's process tree,
kept here only as the baseline the benchmarks compare the cgroup reading with."""

from __future__ import annotations

from collections.abc import Iterable

import psutil


def tree_memory(roots: Iterable[int]) -> dict[int, int]:
    """Resident memory of each root's process tree (a container's init and descendants).

    One scan of the process table serves every container: asking psutil for each
    container's children would rescan all of /proc per container (4 s a cycle at 200).
    Roots that no longer exist are left out.
    """
    wanted = [pid for pid in roots if pid > 0]
    if not wanted:
        return {}
    children: dict[int, list[int]] = {}
    for process in psutil.process_iter(["ppid"]):
        children.setdefault(process.info["ppid"], []).append(process.pid)
    return {root: total for root in wanted if (total := _tree_rss(root, children)) is not None}


def _tree_rss(root: int, children: dict[int, list[int]]) -> int | None:
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            total += psutil.Process(pid).memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            if pid == root:
                return None
            continue
        pending.extend(children.get(pid, ()))
    return total


