"""The agent's cost at 5, 50 and 200 managed units (issue 4's benchmark; issue 6, item 3).

    .venv/bin/python benchmarks/agent_cycle.py

For each size the sandbox runs that many stand-in worker units (5 workers, then 10 and 40
replicas of each), all healthy, so the agent is idle. Then:
- the installed agent (`tracardi-agent.service`, the default 10 s interval) is watched for
  IDLE_WINDOW seconds: its CPU (its own plus the systemctl/docker clients it ran, from
  /proc/PID/stat utime+stime+cutime+cstime), its resident memory, and the CPU of dockerd,
  containerd and systemd in that window, compared to a window with the agent stopped;
- with the agent stopped, `Agent.cycle()` is run in-process inside the sandbox with the
  real adapters; `tracardi_systemd.host.run` (through which every systemctl and docker call
  of the adapters goes) is wrapped to count calls, and `tree_memory` to time the psutil
  read of the containers' memory (one process-table scan per cycle).
"""

from __future__ import annotations

import collections
import os
import resource
import sys
import time
from pathlib import Path

from common import (
    INSTALLED_ENV,
    WORKERS,
    emit,
    install,
    log,
    machine,
    median,
    sandbox_host,
    sh,
    table,
    verdict,
)

SIZES = [5, 50, 200]
CYCLES = 6
IDLE_WINDOW = 30.0
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- inside the sandbox

def cpu_seconds(pid: int, children: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (reaped children)
    return ticks / TICK


def main_pid(unit: str) -> int:
    return int(sh(f"systemctl show -p MainPID --value {unit}").strip())


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith("VmRSS:")) / 1024


def idle(window: float) -> dict:
    """CPU seconds over `window` of the agent (if running), dockerd, containerd, systemd."""
    pids = {"dockerd": main_pid("docker.service"), "containerd": main_pid("containerd.service"),
            "systemd": 1}
    agent = main_pid("tracardi-agent.service")
    if agent:
        pids["agent"] = agent
    before = {name: cpu_seconds(pid, name == "agent") for name, pid in pids.items()}
    time.sleep(window)
    result = {name: cpu_seconds(pid, name == "agent") - before[name]
              for name, pid in pids.items()}
    if agent:
        result["agent_rss_mib"] = rss_mib(agent)
    return result


def cycles(count: int) -> dict:
    import psutil

    from tracardi_systemd import agent as agent_module
    from tracardi_systemd import host
    from tracardi_systemd.dependencies import probe
    from tracardi_systemd.envfile import load_env_file
    from tracardi_systemd.journal import Journal
    from tracardi_systemd.manifest import load_manifest
    from tracardi_systemd.policy import Config

    calls: collections.Counter[str] = collections.Counter()
    call_cpu: collections.Counter[str] = collections.Counter()
    real_run = host.run

    def counting_run(argv, **kwargs):
        name = f"{Path(argv[0]).name} {argv[1]}"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            return real_run(argv, **kwargs)
        finally:
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            calls[name] += 1
            call_cpu[name] += (after.ru_utime + after.ru_stime
                               - before.ru_utime - before.ru_stime)

    memory = {"calls": 0, "seconds": 0.0}
    real_tree_memory = agent_module.container_memory

    def timed_tree_memory(pids):
        began = time.perf_counter()
        try:
            return real_tree_memory(pids)
        finally:
            memory["calls"] += 1
            memory["seconds"] += time.perf_counter() - began

    host.run = counting_run
    agent_module.container_memory = timed_tree_memory
    values = load_env_file(Path(INSTALLED_ENV)).values
    watchdog = agent_module.Agent(
        load_manifest(Path("/")), host.Systemctl(), host.Docker(),
        lambda wanted: probe(values, wanted), Journal(), Config(),
        state_file=Path("/tmp/benchmark-agent-state.json"))
    watchdog.cycle()  # the first cycle builds the history; measure the steady ones
    calls.clear()
    call_cpu.clear()
    memory.update(calls=0, seconds=0.0)
    wall, cpu, children = [], [], []
    for _ in range(count):
        began, cpu0 = time.perf_counter(), time.process_time()
        child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        observation, decision = watchdog.cycle()
        child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall.append(time.perf_counter() - began)
        cpu.append(time.process_time() - cpu0)
        children.append(child1.ru_utime + child1.ru_stime - child0.ru_utime - child0.ru_stime)
    running = sum(1 for v in observation.workers.values() if v.container and v.container.running)

    return {
        "units": len(observation.workers), "running": running, "actions": len(decision.actions),
        "calls": {k: v / count for k, v in calls.items()},
        "call_cpu": {k: v / count for k, v in call_cpu.items()},
        "wall": wall, "cpu": cpu, "children_cpu": children,
        "memory_reads": memory["calls"] / count, "memory_seconds": memory["seconds"] / count,
        "processes": len(psutil.pids()),
        "rss_mib": rss_mib(os.getpid()),
    }


# ---------------------------------------------------------------- outside

def measure() -> dict:
    from common import inside

    results = {}
    with sandbox_host() as host:
        for size in SIZES:
            per_worker = size // len(WORKERS)
            replicas = " ".join(f"--replicas {w}={per_worker}" for w in WORKERS
                                if per_worker > 1)
            log(f"{size} units: install and start")
            install(host, f"{replicas} --start")
            host.run("systemctl restart tracardi-agent")  # it reads the units at start
            host.wait_until(f"[ $(docker ps -q --filter status=running | wc -l) -ge {size} ]",
                            timeout=600)
            time.sleep(10)  # the agent's first cycles; systemd's start jobs settle
            log(f"{size} units: idle windows")
            with_agent = inside(host, __file__, "idle", IDLE_WINDOW)
            host.run("systemctl stop tracardi-agent")
            without_agent = inside(host, __file__, "idle", IDLE_WINDOW)
            log(f"{size} units: in-process cycles")
            results[size] = {"with": with_agent, "without": without_agent,
                             "cycles": inside(host, __file__, "cycles", CYCLES)}
        log("shutting down")
    log("done")
    return results


def report(results: dict) -> str:
    interval = 10.0  # the agent's default --interval
    cycle_rows, idle_rows, call_rows = [], [], []
    programs = sorted({name for r in results.values() for name in r["cycles"]["calls"]})
    for size, result in results.items():
        c = result["cycles"]
        cpu = median(c["cpu"]) + median(c["children_cpu"])
        period = interval + median(c["wall"])  # the loop sleeps `interval` after a cycle
        cycle_rows.append([
            f"{size} ({c['running']} running)", f"{median(c['wall']) * 1000:.0f} ms",
            f"{median(c['cpu']) * 1000:.0f} ms", f"{median(c['children_cpu']) * 1000:.0f} ms",
            f"{c['memory_reads']:.0f} in {c['memory_seconds'] * 1000:.0f} ms",
            c["processes"],
            f"{cpu * 3600 / period:.0f} s ({cpu / period * 100:.2f} %)",
        ])
        call_rows.append([size, *(f"{c['calls'].get(p, 0):g} "
                                  f"({c['call_cpu'].get(p, 0) * 1000:.0f} ms CPU)"
                                  for p in programs),
                          f"{sum(c['calls'].values()):g}"])
        w, wo = result["with"], result["without"]
        agent_share = w["agent"] / IDLE_WINDOW
        induced = sum(w[k] - wo[k] for k in ("dockerd", "containerd", "systemd"))
        ok = agent_share < 0.005 and w["agent_rss_mib"] < 40
        idle_rows.append([
            size, f"{w['agent'] * 3600 / IDLE_WINDOW:.0f} s ({agent_share * 100:.2f} %)",
            f"{w['agent_rss_mib']:.1f} MiB",
            f"{induced * 3600 / IDLE_WINDOW:+.0f} s ({induced / IDLE_WINDOW * 100:+.2f} %)",
            verdict(ok) if size == 200 else "-",
        ])
    constant = len({tuple(sorted(r["cycles"]["calls"].items())) for r in results.values()}) == 1
    return "\n".join([
        "### Agent idle, the installed service (interval 10 s, all units healthy)", "",
        table(["units", "agent CPU per hour (share of one core)", "agent RSS",
               "dockerd + containerd + systemd CPU per hour it causes (vs agent stopped)",
               "target at 200: < 0.5 % of a core, < 40 MB"], idle_rows), "",
        f"### Agent cycle, in-process (median of {CYCLES} cycles, after a first one)", "",
        table(["units", "cycle wall time", "agent CPU", "CPU of its systemctl/docker clients",
               "psutil memory read (time)",
               "processes on host", "CPU per hour (a cycle every 10 s + wall)"],
              cycle_rows), "",
        "### Host commands per cycle (with the CPU of each client process)", "",
        table(["units", *programs, "total"], call_rows), "",
        f"Calls per cycle constant across 5, 50 and 200 units: {verdict(constant)}. The psutil "
        "memory read is one process-table scan per cycle for all containers.",
    ])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        mode, arg = sys.argv[2], sys.argv[3]
        emit(idle(float(arg)) if mode == "idle" else cycles(int(arg)))
        return
    results = measure()
    print(f"Machine: {machine()}\n")
    print(report(results))


if __name__ == "__main__":
    main()
