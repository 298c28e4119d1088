"""The agent's ways before issue 11, kept only as the baselines the benchmarks compare with:
the docker client for the labelled containers (`docker ps` + `docker inspect`, two Go
processes) and the RSS of each container's process tree for its memory."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable

import psutil


def inspect_labelled(label: str) -> list[dict]:
    """`docker inspect` of every container carrying `label`, found with `docker ps`."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"],
                         capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return []
    return json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True,
                                     text=True, check=True).stdout)


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


