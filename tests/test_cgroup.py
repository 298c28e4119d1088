"""Container memory from cgroup files: recorded v1 trees, a v2 tree in the kernel's format."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tracardi_systemd.host import cgroup
from tracardi_systemd.host.cgroup import (
    V1,
    V2,
    CgroupUnavailable,
    cgroup_version,
    containers_memory,
    memory_cgroup,
)

RECORDED = Path(__file__).resolve().parent / "recorded"
V1_TREE = RECORDED / "cgroup-v1"
V2_TREE = RECORDED / "cgroup-v2"
V1_CONTAINERS = json.loads((V1_TREE / "recorded.json").read_text())
V2_PID, V2_ROOT_PID, V2_OUTSIDE_PID = 4321, 77, 88
MIB = 2**20


def roots(tree: Path) -> dict[str, Path]:
    return {"cgroup_root": tree / "sys/fs/cgroup", "proc_root": tree / "proc"}


def docker_stats_bytes(mem_usage: str) -> float:
    """'60.68MiB / 23.54GiB' -> bytes of the first figure."""
    figure = mem_usage.split(" / ")[0]
    for unit, factor in (("GiB", 2**30), ("MiB", MIB), ("KiB", 2**10), ("B", 1)):
        if figure.endswith(unit):
            return float(figure.removesuffix(unit)) * factor
    raise ValueError(mem_usage)


def test_the_version_is_read_from_the_mount(tmp_path: Path) -> None:
    # The recorded v1 tree is hybrid: a v2 mount at unified/ must not make it v2.
    assert (V1_TREE / "sys/fs/cgroup/unified/cgroup.controllers").is_file()
    assert cgroup_version(V1_TREE / "sys/fs/cgroup") == V1
    assert cgroup_version(V2_TREE / "sys/fs/cgroup") == V2
    with pytest.raises(CgroupUnavailable, match=r"neither cgroup\.controllers"):
        cgroup_version(tmp_path)
    with pytest.raises(CgroupUnavailable):
        containers_memory([1], tmp_path, tmp_path)


@pytest.mark.parametrize("container", V1_CONTAINERS, ids=lambda c: c["name"])
def test_v1_memory_is_what_docker_stats_showed(container: dict) -> None:
    measured = containers_memory([container["pid"]], **roots(V1_TREE)).get(container["pid"])

    expected = docker_stats_bytes(container["docker_stats_mem_usage"])
    assert measured is not None
    # docker stats rounds to 0.01 MiB; it read the files a moment after the recording.
    assert abs(measured - expected) <= 0.01 * expected + 0.01 * MIB


def test_v1_leaves_the_inactive_page_cache_out() -> None:
    cache = next(c for c in V1_CONTAINERS if c["name"] == "rec-cache")
    directory = memory_cgroup(cache["pid"], V1, **roots(V1_TREE))
    assert directory == V1_TREE / "sys/fs/cgroup/memory/docker" / cache["container"]
    charged = int((directory / "memory.usage_in_bytes").read_text())

    measured = containers_memory([cache["pid"]], **roots(V1_TREE)).get(cache["pid"])

    assert charged > 40 * MIB  # the 40 MiB file it wrote is charged to it
    assert measured is not None and measured < 2 * MIB


def test_v2_is_memory_current_minus_inactive_file() -> None:
    directory = memory_cgroup(V2_PID, V2, **roots(V2_TREE))
    assert directory is not None and directory.name.startswith("docker-")
    assert directory.parent == V2_TREE / "sys/fs/cgroup/system.slice"

    assert containers_memory([V2_PID], **roots(V2_TREE)).get(V2_PID) == 74448896 - 8388608


def test_v2_root_cgroup_and_cgroups_outside_the_namespace_have_no_figure() -> None:
    assert containers_memory([V2_ROOT_PID], **roots(V2_TREE)).get(V2_ROOT_PID) is None
    assert memory_cgroup(V2_OUTSIDE_PID, V2, **roots(V2_TREE)) is None
    assert containers_memory([V2_PID, V2_ROOT_PID, V2_OUTSIDE_PID], **roots(V2_TREE)) == {
        V2_PID: 66060288}


def test_processes_and_cgroups_that_are_gone_are_left_out(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(V1_TREE, tree)
    worker, cache = V1_CONTAINERS
    shutil.rmtree(tree / "sys/fs/cgroup/memory/docker" / cache["container"])

    result = containers_memory([worker["pid"], cache["pid"], 999999, 0], **roots(tree))

    assert list(result) == [worker["pid"]]
    assert containers_memory([cache["pid"]], **roots(tree)).get(cache["pid"]) is None
    assert containers_memory([999999], **roots(tree)).get(999999) is None


def test_each_container_costs_three_file_reads_and_no_listing(monkeypatch) -> None:
    reads: list[Path] = []
    real_read = cgroup._read
    monkeypatch.setattr(cgroup, "_read", lambda path: reads.append(path) or real_read(path))
    for listing in ("listdir", "scandir"):
        monkeypatch.setattr(os, listing, lambda *_: pytest.fail("a directory was listed"))
    pids = [c["pid"] for c in V1_CONTAINERS]

    assert len(containers_memory(pids, **roots(V1_TREE))) == 2
    assert len(reads) == 3 * len(pids)


def test_a_long_lived_reader_looks_each_pid_up_once_and_again_when_its_cgroup_is_gone(
        monkeypatch, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(V1_TREE, tree)
    reads: list[Path] = []
    real_read = cgroup._read
    monkeypatch.setattr(cgroup, "_read", lambda path: reads.append(path) or real_read(path))
    pids = [c["pid"] for c in V1_CONTAINERS]
    read = cgroup.ContainersMemory(**roots(tree))

    first = read(pids)
    reads.clear()
    assert read(pids) == first
    assert len(reads) == 2 * len(pids)  # usage and memory.stat: no /proc/PID/cgroup

    gone = pids[0]
    directory = memory_cgroup(gone, V1, **roots(tree))
    shutil.rmtree(directory)
    assert gone not in read(pids)
    reads.clear()
    read(pids)
    assert tree / "proc" / str(gone) / "cgroup" in reads  # looked up afresh
