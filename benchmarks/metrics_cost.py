"""What the agent's Prometheus metrics cost it at 200 units (issue 27: under 0.02 % of a core).

    .venv/bin/python benchmarks/metrics_cost.py

In-process, no sandbox: the agent's own MetricsFile renders and writes tracardi.prom (write
and rename, into a directory on disk as /var/lib/prometheus/node-exporter is) after a cycle
of 200 running worker units with memory readings, two dependencies and one queue. Each case runs
CYCLES cycles and takes the CPU time of this process (user + system: the write and rename
are system time) per cycle:
- changed: every cycle brings new memory readings, so every cycle renders and writes;
- unchanged: nothing changed since the last write, so it renders, compares, writes nothing.
The agent ticks every 10 s (360 cycles an hour); memory changes between most ticks, so the
worst case, every tick written, is what the share of a core is computed from.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from common import CHECKOUT, table  # noqa: F401  (CHECKOUT puts the project on sys.path)

from tracardi_systemd.agent.metrics import MetricsFile
from tracardi_systemd.agent.policy import Config, Decision, History, Observation, WorkerView
from tracardi_systemd.host.journal import Journal
from tracardi_systemd.observe.model import ContainerState, QueueReading, UnitState, WorkReading
from tracardi_systemd.spec.addresses import Dependency

UNITS = 200
CYCLES = 2000
TICKS_PER_HOUR = 3600 / 10  # the agent's default --interval
BUDGET_PERCENT = 0.02


def observation(cycle: int) -> Observation:
    views = {}
    work = WorkReading("10.0.0.7:6379", {"celery": QueueReading(cycle % 7, f"m{cycle}")},
                       0, True, 0)
    for i in range(UNITS):
        unit = f"tracardi-scheduler@{i}.service"
        state = UnitState(unit, "active", "running", "success", 0, 123456)
        container = ContainerState(f"id{i}", f"tracardi-scheduler-{i}", unit, "scheduler",
                                   "running", 1000 + i, "2024-05-01T10:00:00Z", "img:0.8.1")
        views[unit] = WorkerView(unit=state, worker="scheduler", container=container,
                                 memory=64 * 2**20 + cycle * 4096 + i,
                                 needs=frozenset({"redis 10.0.0.7:6379", "elasticsearch"}),
                                 recovers_after_outage=True, work=work)
    return Observation(now=float(cycle), workers=views, containers=[],
                       dependencies={"redis 10.0.0.7:6379": True, "elasticsearch": True})


def agent_stub(directory: Path) -> SimpleNamespace:
    needs = [Dependency("redis 10.0.0.7:6379", (("10.0.0.7", 6379),)),
             Dependency("elasticsearch", (("10.0.0.5", 9200),))]
    return SimpleNamespace(
        tracardi_version="0.8.1", config=Config(), upgrade=None,
        needs={f"tracardi-scheduler@{i}.service": needs for i in range(UNITS)},
        journal=Journal(socket_path=str(directory / "no-journal")))


def per_cycle(changed: bool) -> tuple[float, int]:
    """CPU seconds per cycle, and the bytes of the file."""
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="metrics-cost-") as tmp:
        directory = Path(tmp)
        agent = agent_stub(directory)
        clock = iter(range(10**9)).__next__  # a tick apart: never the heartbeat
        metrics = MetricsFile(directory, heartbeat=10**9, clock=lambda: float(clock()))
        decision = Decision([], [], History())
        fixed = observation(0)
        observations = [observation(c) if changed else fixed for c in range(CYCLES)]
        metrics.after_cycle(agent, fixed, decision, 0.01)
        written = (directory / "tracardi.prom").stat().st_mtime_ns
        started = time.process_time()
        for seen in observations:
            metrics.after_cycle(agent, seen, decision, 0.01)
        spent = time.process_time() - started
        rewritten = (directory / "tracardi.prom").stat().st_mtime_ns != written
        assert rewritten == changed, "the case did not do what it claims"
        return spent / CYCLES, (directory / "tracardi.prom").stat().st_size


def host() -> str:
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return (f"{model}; {os.cpu_count()} CPUs, {memory / 2**20:.1f} GiB; Linux "
            f"{platform.release()}; Python {platform.python_version()}")


def main() -> None:
    rows = []
    for changed in (True, False):
        cost, size = per_cycle(changed)
        share = cost * TICKS_PER_HOUR / 3600 * 100
        rows.append(["changed (written)" if changed else "unchanged (not written)",
                     UNITS, f"{cost * 1e3:.2f} ms", f"{TICKS_PER_HOUR:.0f}",
                     f"{cost * TICKS_PER_HOUR:.2f} s", f"{share:.4f} %",
                     f"{size / 1024:.0f} KiB"])
    print(f"Host: {host()}\n")
    print(table(["case", "units", "CPU per cycle", "cycles per hour", "CPU per hour",
                 "share of a core", "file"], rows))
    worst = float(rows[0][5].split()[0])
    verdict = "met" if worst < BUDGET_PERCENT else "**not met**"
    print(f"\nTarget, the agent's metrics at {UNITS} units with every tick written: "
          f"{worst:.4f} % of a core (under {BUDGET_PERCENT} %), {verdict}.")


if __name__ == "__main__":
    main()
