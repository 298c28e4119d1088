"""The cgroup memory reader inside the sandbox, against docker stats."""

from __future__ import annotations

import json
import shlex

from .host import Host
from .releases import selected
from .sandbox import DOCKER, Sandbox

IMAGE = "tracardi/com-tracardi-scheduler-worker:0.8.1"
PYTHON = selected().python
READ = """
import json, sys
from tracardi_systemd.host.cgroup import cgroup_version, containers_memory, memory_cgroup
pids = [int(p) for p in sys.argv[1:]]
version = cgroup_version()
print(json.dumps({"version": version, "memory": containers_memory(pids),
                  "cgroups": [str(memory_cgroup(p, version)) for p in pids]}))
"""
MIB = 2**20


def read_inside(sandbox: Sandbox, *pids: int) -> dict:
    args = " ".join(str(pid) for pid in pids)
    out = sandbox.run(f"{PYTHON} -c {shlex.quote(READ)} {args}").stdout
    return json.loads(out)


UNITS = {"KiB": 2**10, "MiB": MIB, "GiB": 2**30}


def stats_bytes(sandbox: Host, name: str) -> float:
    usage = sandbox.run(f"{DOCKER} stats --no-stream --format '{{{{.MemUsage}}}}' {name}")
    figure = usage.stdout.split(" / ")[0]
    unit = figure[-3:]
    assert unit in UNITS, usage.stdout
    return float(figure[:-3]) * UNITS[unit]


def test_a_container_s_memory_is_what_docker_stats_shows(sandbox: Sandbox) -> None:
    name = "e2e-cgroup-alloc"
    sandbox.run(f"{DOCKER} run -d --network host --init --name {name} "
                f"-e STANDIN_ALLOC_MB_SCHEDULER=60 {IMAGE}")
    try:
        sandbox.wait_until(f"{DOCKER} logs {name} | grep -q 'standin holding 60 MB'")
        inspect = f"{DOCKER} inspect -f '{{{{.State.Pid}}}} {{{{.Id}}}}' {name}"
        pid, container = sandbox.run(inspect).stdout.split()

        read = read_inside(sandbox, int(pid))
        expected = stats_bytes(sandbox, name)

        # The sandbox mounts cgroup v1 hierarchies in its own cgroup namespace.
        assert read["version"] == 1
        assert read["cgroups"] == [f"/sys/fs/cgroup/memory/docker/{container}"]
        measured = read["memory"][pid]
        assert measured >= 60 * MIB
        assert abs(measured - expected) <= 0.1 * expected, (measured, expected)
    finally:
        sandbox.run(f"{DOCKER} rm -f {name}")
    assert read_inside(sandbox, int(pid))["memory"] == {}
