"""The watchdog agent's loop: observe, decide (policy.decide), act, report, notify.

Everything it decides comes from `policy`; this module only gathers the observation with a
fixed number of host calls, carries out the actions, writes the journal entries, publishes
its view for `status`, and talks sd_notify with systemd.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import sdnotify

from tracardi_systemd.catalog import Worker, workers_for
from tracardi_systemd.dependencies import ELASTICSEARCH, REDIS
from tracardi_systemd.files import write_atomic
from tracardi_systemd.host import CommandError, Docker, Systemctl
from tracardi_systemd.journal import ERROR, Journal
from tracardi_systemd.manifest import Manifest
from tracardi_systemd.observe import by_unit, read_containers, read_units, tree_memory
from tracardi_systemd.policy import (
    Action,
    Config,
    Decision,
    History,
    Observation,
    WorkerView,
    decide,
    summary,
)
from tracardi_systemd.render import AGENT_UNIT, TARGET
from tracardi_systemd.status import AGENT_STATE_FILE
from tracardi_systemd.table import columns

DOCKER_DATA_DIR = "/var/lib/docker"
CYCLE_FAILED_ID = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a10"


def worker_of(unit: str, workers: dict[str, Worker]) -> Worker | None:
    """tracardi-scheduler.service and tracardi-scheduler@2.service belong to `scheduler`."""
    name = unit.removeprefix("tracardi-").split("@", 1)[0].removesuffix(".service")
    return workers.get(name)


def needs_of(worker: Worker | None) -> frozenset[str]:
    if worker is None:
        return frozenset()
    return frozenset(
        name for name, needed in ((REDIS, worker.needs_redis),
                                  (ELASTICSEARCH, worker.needs_elastic)) if needed
    )


@dataclass
class Agent:
    manifest: Manifest
    systemctl: Systemctl
    docker: Docker
    probe: Callable[[set[str]], dict[str, bool]]
    journal: Journal
    config: Config
    state_file: Path = AGENT_STATE_FILE
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        catalog = {w.name: w for w in workers_for(self.manifest.tracardi_version)}
        self.units = [u for u in self.manifest.units if u not in (TARGET, AGENT_UNIT)]
        self.workers = {u: worker_of(u, catalog) for u in self.units}
        self.history = History()

    def observe(self) -> Observation:
        units = read_units(self.systemctl, self.units)
        containers = read_containers(self.docker)
        owned = by_unit(containers)
        memory = tree_memory(c.pid for c in owned.values() if c.running)
        views = {}
        for name in self.units:
            container = owned.get(name)
            worker = self.workers[name]
            views[name] = WorkerView(
                unit=units[name],
                worker=worker.name if worker else "",
                container=container,
                memory=memory.get(container.pid) if container and container.running else None,
                needs=needs_of(worker),
            )
        wanted = set().union(*(v.needs for v in views.values()))
        return Observation(
            now=self.clock(),
            workers=views,
            containers=containers,
            dependencies=self.probe(wanted),
            host_memory_percent=psutil.virtual_memory().percent,
            docker_disk_percent=_disk_percent(DOCKER_DATA_DIR),
            clock_time=time.strftime("%H:%M"),
        )

    def cycle(self, dry_run: bool = False) -> tuple[Observation, Decision]:
        observation = self.observe()
        decision = decide(observation, self.history, self.config, random.random)
        if not dry_run:
            for action in decision.actions:
                self._act(action)
            for event in decision.events:
                self.journal.send(event.message, event.priority, event.kind.value,
                                  **event.fields)
            self.history = decision.history
            self._publish(observation)
        return observation, decision

    def _act(self, action: Action) -> None:
        try:
            if action.kind == "rearm":
                self.systemctl("reset-failed", action.target)
                self.systemctl("start", "--no-block", action.target)
            elif action.kind == "restart":
                self.systemctl("restart", "--no-block", action.target)
            elif action.kind == "remove":
                self.docker.remove(action.target)
        except CommandError as exc:
            self.journal.send(f"{action.kind} {action.target} failed: {exc}", ERROR,
                              CYCLE_FAILED_ID, TRACARDI_ACTION=f"{action.kind}-failed",
                              TRACARDI_REASON=action.reason)

    def _publish(self, observation: Observation) -> None:
        view = {
            "summary": summary(observation, self.history),
            "workers": {
                unit: {"state": h.state.value, "restarts": h.agent_restarts,
                       "last_reason": h.last_reason}
                for unit, h in self.history.workers.items()
            },
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_file, json.dumps(view, indent=2).encode())

    def run(self, interval: float, stop: threading.Event) -> None:
        """Cycle until `stop` is set; READY after the first full cycle, WATCHDOG after each."""
        notifier = sdnotify.SystemdNotifier()
        ready = False
        while not stop.is_set():
            try:
                observation, _ = self.cycle()
            except CommandError as exc:
                # No WATCHDOG=1 for an incomplete cycle: if this persists, systemd restarts us.
                self.journal.send(f"cycle failed: {exc}", ERROR, CYCLE_FAILED_ID,
                                  TRACARDI_ACTION="cycle-failed", TRACARDI_REASON=str(exc))
            else:
                status = summary(observation, self.history)
                first = "" if ready else "READY=1\n"
                notifier.notify(f"{first}WATCHDOG=1\nSTATUS={status}")
                ready = True
            stop.wait(interval)
        notifier.notify("STOPPING=1")


def describe_cycle(observation: Observation, decision: Decision, dry_run: bool) -> str:
    """What `agent --once` prints: each unit as seen, then what was (or would be) done."""
    rows = [("UNIT", "SYSTEMD", "CONTAINER", "MEMORY", "AGENT STATE")]
    for unit, view in sorted(observation.workers.items()):
        past = decision.history.workers.get(unit)
        rows.append((
            unit, f"{view.unit.active_state}/{view.unit.sub_state}",
            view.container.status if view.container else "missing",
            f"{view.memory / 2**20:.0f}MiB" if view.memory else "-",
            past.state.value if past else "-",
        ))
    lines = [columns(rows), summary(observation, decision.history)]
    verb = "would" if dry_run else "did"
    lines += [f"{verb} {a.kind} {a.target}: {a.reason}" for a in decision.actions]
    if not decision.actions:
        lines.append("nothing to do")
    return "\n".join(lines)


def _disk_percent(path: str) -> float:
    try:
        return psutil.disk_usage(path).percent
    except OSError:
        return 0.0


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
