"""The agent's cost at 5, 50 and 200 managed units, and how soon it knows of a death (issue 11).

    .venv/bin/python benchmarks/agent_cycle.py

For each size the sandbox runs that many stand-in worker units (5 workers, then 10 and 40
replicas of each), all healthy, and the installed agent (`tracardi-agent.service` with its
defaults: a tick every 10 s, a reconcile with systemd every 60 s while nothing happens).
- Idle: the agent's process is watched for PERIODS consecutive reconcile periods, and the
  median period is reported (one burst of something else on this shared machine then
  spoils nothing): its CPU (its threads, /proc/PID/task/*/schedstat, plus the systemctl
  clients it ran and reaped, cutime + cstime), its memory (VmRSS, Pss), and the CPU of
  dockerd, containerd, systemd and of a do-nothing process waking every tick.
- Deaths: KILLS containers, one at a time while the agent idles, die of SIGKILL to their
  main process; from just before kill(2) to docker's `die` event (the floor: dockerd knows)
  and to the agent's CONTAINER_DIED journal entry (its __REALTIME_TIMESTAMP, stamped by
  journald on arrival: the agent knows).
- In-process, with the service stopped: an `Agent` built as `tracardi-systemd agent` builds
  it runs TICKS ticks and RECONCILES reconciles; each is timed, and every host call counted
  (Engine API requests, client processes, TCP connects of the dependency probes, cgroup
  file reads). The baseline, timed the same way: the agent's polling before issue 11,
  `docker ps` + `docker inspect` + `systemctl show` as client processes and a process-table
  scan for memory (benchmarks/baseline.py), all once per tick.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import (
    INSTALLED_ENV,
    WORKERS,
    Events,
    emit,
    install,
    log,
    machine,
    main_pid,
    median,
    memory_kib,
    ms,
    own_cpu,
    p95,
    reaped_children_cpu,
    sandbox_host,
    sh,
    table,
    threads_cpu,
    verdict,
)

SIZES = [5, 50, 200]
INTERVAL, RECONCILE_EVERY = 10.0, 60.0  # the agent's defaults
PERIODS = 3  # idle windows of one reconcile period each; their median is reported
KILLS = 10
TICKS, RECONCILES = 12, 4
LABEL = "tracardi.managed=true"
CONTAINER_DIED = "86111eadd1bf45f4ac7bbe451ae331c4"
TARGETS = {5: 0.1, 200: 0.5}  # idle CPU, % of one core
KNOWN_WITHIN = 1.0  # seconds from a death to the agent knowing


# ---------------------------------------------------------------- inside the sandbox

def daemons() -> dict[str, int]:
    return {"dockerd": main_pid("docker.service"), "containerd": main_pid("containerd.service"),
            "systemd": 1}


def idle(periods: int) -> dict:
    """CPU seconds, in each of `periods` reconcile periods, of the running agent (and its
    reaped clients), of the daemons, and of a Python process that wakes as often as the
    agent ticks and does nothing (the floor of any such process on this machine); the
    agent's memory at the end."""
    agent = main_pid("tracardi-agent.service")
    floor = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: "
                              f"time.sleep({INTERVAL})"])
    watched = {"agent": agent, "floor": floor.pid, **daemons()}

    def now() -> dict[str, float]:
        return {**{name: threads_cpu(pid) for name, pid in watched.items()},
                "agent_clients": reaped_children_cpu(agent)}

    marks = [now()]
    for _ in range(periods):
        time.sleep(RECONCILE_EVERY)
        marks.append(now())
    floor.kill()
    assert main_pid("tracardi-agent.service") == agent, "the agent restarted meanwhile"
    return {"period": RECONCILE_EVERY, "memory_kib": memory_kib(agent),
            "cpu": [{name: after[name] - before[name] for name in after}
                    for before, after in itertools.pairwise(marks)]}


def deaths(kills: int) -> dict:
    """Seconds from SIGKILL of a container's main process to docker's die event and to the
    agent's CONTAINER_DIED journal entry; one death at a time, each in another unit."""
    from tracardi_systemd.host.engine import Engine

    engine = Engine()
    names = sorted(c["Names"][0].lstrip("/") for c in engine.containers(LABEL, all=False))
    victims = [names[i * len(names) // kills % len(names)] for i in range(kills)]
    events = Events()
    floor, known = [], []
    for name in victims:
        pid = engine.inspect(name)["State"]["Pid"]
        events.drain()
        killed_ns = time.time_ns()
        os.kill(pid, signal.SIGKILL)
        die = events.wait(lambda e, n=name: e.action == "die" and e.name == n, 10)
        entry = _journal_entry(name, killed_ns, timeout=10)
        floor.append(die.time - killed_ns / 1e9 if die else None)
        known.append((int(entry["__REALTIME_TIMESTAMP"]) * 1000 - killed_ns) / 1e9
                     if entry else None)
        events.wait(lambda e, n=name: e.action == "start" and e.name == n, 30)
        time.sleep(3)  # the agent's cycles for this death are done: it idles again
    events.close()
    return {"floor": floor, "known": known}


def _journal_entry(container: str, after_ns: int, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sh(f"journalctl -o json --since @{after_ns // 10**9} MESSAGE_ID={CONTAINER_DIED} "
                 f"TRACARDI_CONTAINER={container}", check=False)
        for line in out.splitlines():
            entry = json.loads(line)
            if int(entry["__REALTIME_TIMESTAMP"]) * 1000 >= after_ns:
                return entry
        time.sleep(0.2)
    return None


class HostCalls:
    """Counts every call the agent makes on the host, by wrapping the few functions they
    all go through: Engine._call (API requests), host.run (client processes),
    dependencies.reachable (TCP connects) and cgroup._read (cgroup and /proc files)."""

    def __init__(self) -> None:
        from tracardi_systemd.host import cgroup
        from tracardi_systemd.host import commands as host
        from tracardi_systemd.host.engine import Engine
        from tracardi_systemd.spec import addresses as dependencies

        self.counts: collections.Counter[str] = collections.Counter()
        self._wrap(Engine, "_call", lambda engine, method, path, *_, **__:
                   f"API {method} {re.sub('[0-9a-f]{64}', '{id}', path)}")
        self._wrap(host, "run", lambda argv, *_, **__: f"{Path(argv[0]).name} {argv[1]}")
        self._wrap(dependencies, "reachable", lambda *_, **__: "TCP connect")
        self._wrap(cgroup, "_read", lambda *_, **__: "cgroup/proc file read")

    def _wrap(self, owner: object, name: str, kind) -> None:
        real = getattr(owner, name)

        def counted(*args, **kwargs):
            self.counts[kind(*args, **kwargs)] += 1
            return real(*args, **kwargs)

        setattr(owner, name, counted)

    def take(self) -> dict[str, int]:
        counts = dict(self.counts)
        self.counts.clear()
        return counts


def timed(step, dockerd: int) -> dict:
    """One call of `step`: wall and CPU seconds (this process and its clients), and the CPU
    it cost dockerd and systemd meanwhile."""
    d0, s0, c0, w0 = threads_cpu(dockerd), threads_cpu(1), own_cpu(), time.perf_counter()
    step()
    w1, c1, s1, d1 = time.perf_counter(), own_cpu(), threads_cpu(1), threads_cpu(dockerd)
    return {"wall": w1 - w0, "cpu": c1 - c0, "dockerd": d1 - d0, "systemd": s1 - s0}


def cycles(ticks: int, reconciles: int) -> dict:
    from baseline import inspect_labelled, tree_memory

    from tracardi_systemd.agent.loop import Agent, InputFiles
    from tracardi_systemd.agent.policy import Config
    from tracardi_systemd.host.commands import Systemctl
    from tracardi_systemd.host.engine import Engine
    from tracardi_systemd.host.journal import Journal
    from tracardi_systemd.install.manifest import manifest_path
    from tracardi_systemd.observe.read import UNIT_PROPERTIES
    from tracardi_systemd.spec.addresses import probe

    calls = HostCalls()
    watchdog = Agent(InputFiles(manifest_path(Path("/")), Path(INSTALLED_ENV)), Systemctl(),
                     Engine(), probe, Journal(), Config(),
                     state_file=Path("/tmp/benchmark-agent-state.json"))
    watchdog.cycle()  # the first cycle inspects every container once; measure the steady ones
    calls.take()
    dockerd = main_pid("docker.service")
    result: dict = {}
    for kind, count, refresh in (("tick", ticks, False), ("reconcile", reconciles, True)):
        samples = [timed(lambda r=refresh: watchdog.cycle(refresh_systemd=r), dockerd)
                   for _ in range(count)]
        result[kind] = {"samples": samples, "calls": {k: v / count
                                                      for k, v in calls.take().items()}}

    units = watchdog.units

    def poll_with_clients() -> None:
        details = inspect_labelled(LABEL)
        Systemctl().show(units, UNIT_PROPERTIES)
        tree_memory(d["State"]["Pid"] for d in details)

    result["baseline"] = {"samples": [timed(poll_with_clients, dockerd) for _ in range(ticks)]}
    result["units"] = len(units)
    return result


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
            host.wait_until(f"[ $(docker ps -q --filter status=running | wc -l) -ge {size} ] "
                            "&& [ -z \"$(docker ps -q --filter health=starting)\" ]",
                            timeout=600)
            time.sleep(INTERVAL + 5)  # the agent's cycles after the last change settle
            log(f"{size} units: the agent idle for {PERIODS} x {RECONCILE_EVERY:.0f} s")
            result = {"idle": inside(host, __file__, "idle", PERIODS)}
            log(f"{size} units: {KILLS} deaths")
            result["deaths"] = inside(host, __file__, "deaths", KILLS)
            host.run("systemctl stop tracardi-agent")
            log(f"{size} units: in-process ticks and reconciles")
            result["cycles"] = inside(host, __file__, "cycles", TICKS, RECONCILES)
            results[size] = result
        log("shutting down")
    log("done")
    return results


def per_hour(seconds: float) -> str:
    """CPU seconds per second as seconds per hour and share of one core."""
    return f"{seconds * 3600:.1f} s ({seconds * 100:.2f} %)"


def rate(cycles: dict, key: str) -> float:
    """CPU seconds per second at the default cadence: a cycle every INTERVAL, of which one
    every RECONCILE_EVERY asks systemd too."""
    tick = median([s[key] for s in cycles["tick"]["samples"]])
    reconcile = median([s[key] for s in cycles["reconcile"]["samples"]])
    return tick / INTERVAL + (reconcile - tick) / RECONCILE_EVERY


def report(results: dict) -> str:
    idle_rows, cycle_rows, call_rows, death_rows, verdicts = [], [], [], [], []
    all_known: list[float | None] = []
    call_names = sorted({name for r in results.values() for kind in ("tick", "reconcile")
                         for name in r["cycles"][kind]["calls"]})
    for size, r in results.items():
        idle, cyc = r["idle"], r["cycles"]

        def idle_rate(*names: str, idle=idle) -> float:
            """CPU seconds per second of `names` together: the median period's."""
            return median([sum(p[n] for n in names) for p in idle["cpu"]]) / idle["period"]

        agent = idle_rate("agent", "agent_clients")
        baseline = median([s["cpu"] for s in cyc["baseline"]["samples"]]) / INTERVAL
        target = TARGETS.get(size)
        if target is not None:
            verdicts.append(f"Target, agent idle CPU at {size} units <= {target} % of a core: "
                            f"{agent * 100:.2f} % (baseline {baseline * 100:.2f} %, "
                            f"{agent / baseline:.3f}x), {verdict(agent * 100 <= target)}.")
        idle_rows.append([
            size, per_hour(agent),
            ", ".join(f"{sum(p[n] for n in ('agent', 'agent_clients')) * 1000:.0f}"
                      for p in idle["cpu"]) + " ms",
            per_hour(idle_rate("floor")), f"{idle_rate('agent_clients') * 3600:.1f} s",
            f"{idle['memory_kib']['rss'] / 1024:.1f} MiB / {idle['memory_kib']['pss'] / 1024:.1f}"
            " MiB", per_hour(idle_rate("dockerd", "containerd")),
            per_hour(idle_rate("systemd")), per_hour(baseline),
            f"{agent / baseline:.3f}", f"<= {target} %" if target is not None else "-"])
        samples = {kind: cyc[kind]["samples"] for kind in ("tick", "reconcile", "baseline")}
        cycle_rows.append([size, *(f"{median([s['wall'] for s in samples[k]]) * 1000:.1f} / "
                                   f"{median([s['cpu'] for s in samples[k]]) * 1000:.1f} ms"
                                   for k in samples),
                           per_hour(rate(cyc, "cpu")),
                           per_hour(rate(cyc, "dockerd") + rate(cyc, "systemd"))])
        call_rows.append([size, *(f"{cyc['tick']['calls'].get(n, 0):g} / "
                                  f"{cyc['reconcile']['calls'].get(n, 0):g}"
                                  for n in call_names)])
        known = [k for k in r["deaths"]["known"] if k is not None]
        floor = [f for f in r["deaths"]["floor"] if f is not None]
        lost = len(r["deaths"]["known"]) - len(known)
        death_rows.append([size, f"{len(known)}" + (f" + {lost} never" if lost else ""),
                           ms(median(floor)), ms(median(known)), ms(p95(known)), ms(max(known))])
        all_known += r["deaths"]["known"]
    known = [k for k in all_known if k is not None]
    verdicts.append(f"Target, a container's death known to the agent within {KNOWN_WITHIN:.0f} s: "
                    f"median {ms(median(known))} of {len(known)} deaths at all sizes, slowest "
                    f"{ms(max(known))}"
                    + (f", {len(all_known) - len(known)} never" if len(known) < len(all_known)
                       else "")
                    + f" (baseline: the next cycle of a polling agent, up to {INTERVAL:.0f} s), "
                    f"{verdict(len(known) == len(all_known) and median(known) <= KNOWN_WITHIN)}.")
    return "\n".join([
        f"### Agent idle, the installed service (a tick every {INTERVAL:.0f} s, a reconcile "
        f"every {RECONCILE_EVERY:.0f} s; all units healthy; the median of {PERIODS} "
        f"consecutive {RECONCILE_EVERY:.0f} s periods)", "",
        table(["units", "agent CPU per hour, with its clients (share of a core)",
               "agent CPU in each period",
               f"floor: a Python process waking every {INTERVAL:.0f} s, doing nothing",
               "of which its systemctl clients", "agent RSS / PSS",
               "dockerd + containerd CPU", "systemd CPU",
               "baseline: polling with clients every 10 s", "agent / baseline", "target"],
              idle_rows), "",
        *verdicts, "",
        f"### One tick, one reconcile, in-process (median of {TICKS} and {RECONCILES}; "
        "wall / CPU of the agent and its clients)", "",
        table(["units", "tick", "reconcile", "baseline: one polling cycle with clients",
               "agent CPU per hour (model: ticks + reconciles)",
               "dockerd + systemd CPU per hour it causes (model)"], cycle_rows), "",
        "### Host calls per tick / per reconcile", "",
        table(["units", *call_names], call_rows), "",
        "Constant in number across 5, 50 and 200 units but for the cgroup files (two small "
        "reads per running container; three the first time, for its cgroup's path). An Engine "
        "API inspect is made only for a container not seen before; `systemctl show` only for "
        "units whose state changed since the last look (none here).", "",
        f"### From a container's death to the agent knowing ({KILLS} SIGKILLs of a "
        "container's main process, one at a time, the agent idle)", "",
        table(["units", "deaths", "kill -> docker's die event (median)",
               "kill -> agent's CONTAINER_DIED entry (median)", "p95", "max"], death_rows),
    ])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        mode, args = sys.argv[2], [float(a) for a in sys.argv[3:]]
        if mode == "idle":
            emit(idle(int(args[0])))
        elif mode == "deaths":
            emit(deaths(int(args[0])))
        else:
            emit(cycles(int(args[0]), int(args[1])))
        return
    results = measure()
    print(f"Machine: {machine()}\n")
    print(report(results))


if __name__ == "__main__":
    main()
