"""The Engine API over the socket against the docker client, and the events stream's latency.

    .venv/bin/python benchmarks/engine_vs_client.py

Inside the sandbox, with 5 and then 50 labelled stand-in containers running, each way of
learning about them is called RUNS times, the ways taking turns so that they share the
background noise; reported are medians per call of the wall time and of the CPU time
(of the benchmark process, time.process_time, plus the children it reaped, getrusage),
and the CPU time all of dockerd's threads spent meanwhile (/proc/PID/task/*/schedstat):
- `Engine.containers(label)`: one GET /containers/json (no State.Pid in it);
- `Engine.containers(label)` + `Engine.inspect(id)` of each: what the client's two calls
  give, State.Pid included;
- `baseline.inspect_labelled(label)`: `docker ps` + `docker inspect`, two Go clients.
The memory of all their main processes is read both ways as well: `cgroup.containers_memory`
(three file reads per container) and `baseline.tree_memory` (one process-table scan).

Events: KILLS times a labelled container is started and killed, once with `docker kill`
and once with SIGKILL of its main process, while `Engine.events()` streams; timed from
just before the kill to the `die` event handed over by `poll()` (wall clock, the one
dockerd stamps `timeNano` with).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from common import (
    IMAGE,
    emit,
    log,
    machine,
    main_pid,
    median,
    ms,
    own_cpu,
    p95,
    sandbox_host,
    sh,
    table,
    threads_cpu,
)

SIZES = [5, 50]
RUNS = 20
KILLS = 10
LABEL = "bench.engine=1"


# ---------------------------------------------------------------- inside the sandbox

def calls(runs: int) -> dict:
    from baseline import inspect_labelled, tree_memory

    from tracardi_systemd.host.cgroup import containers_memory
    from tracardi_systemd.host.engine import Engine

    engine = Engine()
    dockerd = main_pid("docker.service")
    pids = [c["State"]["Pid"] for c in inspect_labelled(LABEL)]
    ways = {
        "containers": lambda: engine.containers(LABEL),
        "containers+inspect": lambda: [engine.inspect(c["Id"])
                                       for c in engine.containers(LABEL)],
        "docker ps+inspect": lambda: inspect_labelled(LABEL),
        "cgroup memory": lambda: containers_memory(pids),
        "tree memory": lambda: tree_memory(pids),
    }
    sizes = {name: len(way()) for name, way in ways.items()}  # warm-up, and a check
    result = {name: {"wall": [], "cpu": [], "dockerd": [], "items": sizes[name]}
              for name in ways}
    for _ in range(runs):
        for name, way in ways.items():
            d0, c0, w0 = threads_cpu(dockerd), own_cpu(), time.perf_counter()
            way()
            w1, c1, d1 = time.perf_counter(), own_cpu(), threads_cpu(dockerd)
            result[name]["wall"].append(w1 - w0)
            result[name]["cpu"].append(c1 - c0)
            result[name]["dockerd"].append(d1 - d0)
    return {"containers": len(pids), "ways": result}


def kill_latency(kills: int) -> dict:
    from tracardi_systemd.host.engine import Engine

    engine = Engine()
    result: dict[str, dict[str, list[float]]] = {}
    with engine.events(label=LABEL) as stream:
        for how in ("docker kill", "SIGKILL"):
            timings = result[how] = {"arrival": [], "logged": [], "delivery": []}
            for i in range(kills):
                name = f"bench-kill-{how[0]}{i}"
                container = sh(f"docker run -d --network host --init --label {LABEL} "
                               f"--name {name} {IMAGE}").strip()
                pid = int(sh(f"docker inspect -f '{{{{.State.Pid}}}}' {name}"))
                while stream.poll(0.3) is not None:  # its start, and anything else
                    pass
                began = time.time_ns()
                if how == "SIGKILL":
                    os.kill(pid, signal.SIGKILL)
                    client = None
                else:
                    client = subprocess.Popen(["docker", "kill", name],
                                              stdout=subprocess.DEVNULL)
                die = None
                while die is None:
                    event = stream.poll(10)
                    assert event is not None, f"no die event for {name} within 10 s"
                    if event["Action"] == "die" and event["id"] == container:
                        die = event
                arrived = time.time_ns()
                if client:
                    client.wait()
                timings["arrival"].append((arrived - began) / 1e9)
                timings["logged"].append((die["timeNano"] - began) / 1e9)
                timings["delivery"].append((arrived - die["timeNano"]) / 1e9)
                sh(f"docker rm -f {name}")
    return result


# ---------------------------------------------------------------- outside

def measure() -> dict:
    from common import inside

    results: dict = {"calls": {}}
    with sandbox_host() as host:
        running = 0
        for size in SIZES:
            log(f"starting {size - running} more labelled containers")
            host.run(f"for i in $(seq {running} {size - 1}); do docker run -d --network host "
                     f"--init --label {LABEL} --name bench-$i {IMAGE} >/dev/null; done",
                     timeout=600)
            running = size
            log(f"{size} containers: {RUNS} runs of each way")
            results["calls"][size] = inside(host, __file__, "calls", RUNS)
        host.run(f"docker rm -f $(docker ps -aq --filter label={LABEL}) >/dev/null",
                 timeout=300)
        log(f"{KILLS} kills each way while streaming events")
        results["kills"] = inside(host, __file__, "kills", KILLS)
        log("shutting down")
    return results


def per_call(values: list[float]) -> str:
    return f"{median(values) * 1000:.1f} ms"


def report(results: dict) -> str:
    listing, memory = [], []
    labels = {
        "containers": "`Engine.containers()` (1 request)",
        "containers+inspect": "`Engine.containers()` + `inspect()` of each (1 + N requests)",
        "docker ps+inspect": "`docker ps` + `docker inspect` (`baseline.inspect_labelled`)",
        "cgroup memory": "`cgroup.containers_memory` (3 file reads per container)",
        "tree memory": "`baseline.tree_memory` (1 process-table scan)",
    }
    for size, result in results["calls"].items():
        ways = result["ways"]
        client = median(ways["docker ps+inspect"]["wall"])
        for name, way in ways.items():
            row = [size, labels[name], per_call(way["wall"]), per_call(way["cpu"])]
            if "memory" in name:
                memory.append(row)
                continue
            ratio = median(way["wall"]) / client
            listing.append([*row, per_call(way["dockerd"]), f"{ratio:.3f}"])
    kill_rows = []
    for how, timings in results["kills"].items():
        kill_rows.append([
            f"`{how}`" if how == "docker kill" else "SIGKILL of the main process",
            len(timings["arrival"]), ms(median(timings["arrival"])),
            ms(p95(timings["arrival"])), ms(median(timings["logged"])),
            f"{median(timings['delivery']) * 1000:.1f} ms",
        ])
    return "\n".join([
        f"### Labelled containers: Engine API over the socket vs the docker client "
        f"(median of {RUNS} calls)", "",
        table(["containers", "way", "wall per call", "CPU per call (user+sys incl. children)",
               "dockerd CPU per call", "wall / docker client's"], listing), "",
        f"### Memory of every container's main process (median of {RUNS} calls)", "",
        table(["containers", "way", "wall per call", "CPU per call"], memory), "",
        f"### Kill to `die` event handed over by `EventStream.poll()` ({KILLS} kills each)", "",
        table(["kill", "kills", "median to the event in hand", "p95",
               "median to docker's die timestamp", "median die timestamp to event in hand"],
              kill_rows),
    ])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        mode, arg = sys.argv[2], int(sys.argv[3])
        emit(calls(arg) if mode == "calls" else kill_latency(arg))
        return
    results = measure()
    print(f"Machine: {machine()}\n")
    print(report(results))


if __name__ == "__main__":
    main()
