"""The agent's view as Prometheus metrics, for node_exporter's textfile collector.

After a cycle the agent writes `tracardi.prom` into the collector's directory (write and
rename, so node_exporter never reads half a file) when anything but its own clock changed,
and at least every `heartbeat` seconds, so that `tracardi_agent_last_cycle_timestamp_seconds`
proves it is alive. Unknown values (memory of a stopped container, a liveness check without
a verdict yet) are left out rather than written as 0, as Prometheus' conventions ask.

The queues are those of the workers whose work the agent reads from Redis (work-based
liveness): their depth, how long their oldest message has waited as far as the agent has
seen, and whether that wait is reported stuck.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tracardi_systemd.agent.journal_ids import Entry, EntryKind
from tracardi_systemd.agent.policy import ActionKind, Decision, History, Observation, State
from tracardi_systemd.host.journal import Priority
from tracardi_systemd.install.files import write_atomic
from tracardi_systemd.names import METRICS_FILE
from tracardi_systemd.observe.model import QueueReading, queue_key
from tracardi_systemd.spec.addresses import Dependency

if TYPE_CHECKING:
    from tracardi_systemd.agent.loop import Agent


# name: (type, help). The order is the file's.
SERIES = {
    "tracardi_worker_up": ("gauge", "1 when the worker's unit is active in systemd, else 0."),
    "tracardi_worker_container_running": (
        "gauge", "1 when the worker's container is running, else 0."),
    "tracardi_worker_live": (
        "gauge", "1 when the worker's liveness check passes, 0 when it fails; absent without "
        "a check or a verdict yet."),
    "tracardi_worker_memory_bytes": (
        "gauge", "Memory of the worker's container as its cgroup counts it; absent when not "
        "running."),
    "tracardi_worker_memory_limit_bytes": (
        "gauge", "Memory past which the agent restarts the worker."),
    "tracardi_worker_backoff": (
        "gauge", "1 while systemd has given up on the unit and the agent waits to re-arm it."),
    "tracardi_worker_backoff_attempts": (
        "gauge", "Re-arms since the worker last ran stably: above 0 in a crash loop systemd "
        "gave up on."),
    "tracardi_worker_gave_up_total": (
        "counter", "Times systemd gave up on the unit (start limit or failed), as the agent "
        "saw it."),
    "tracardi_worker_agent_restarts_total": (
        "counter", "Restarts and re-arms the agent ordered, by reason."),
    "tracardi_worker_systemd_restarts_total": (
        "counter", "Times the worker's container was replaced without the agent asking "
        "(systemd's Restart=, or an operator's restart), as the agent saw it."),
    "tracardi_dependency_reachable": (
        "gauge", "1 when the dependency accepts a TCP connection on one of its addresses "
        "(docker: when docker.service is active)."),
    "tracardi_queue_messages": (
        "gauge", "Messages waiting in a queue the workers take work from (LLEN)."),
    "tracardi_queue_oldest_wait_seconds": (
        "gauge", "How long the queue's oldest message has waited, as far as the agent has "
        "seen it (from the tick it first saw it oldest); 0 when the queue is empty."),
    "tracardi_queue_stuck": (
        "gauge", "1 while work has waited past the agent's --work-wait although every "
        "consumer looks live (the agent reported the queue stuck), else 0."),
    "tracardi_upgrade_in_flight": (
        "gauge", "1 while `tracardi-systemd upgrade` holds its lock on this host."),
    "tracardi_agent_heartbeat_seconds": (
        "gauge", "The longest the agent leaves this file unwritten while it runs."),
    "tracardi_agent_last_cycle_timestamp_seconds": (
        "gauge", "Unix time of the agent cycle that wrote this file."),
    "tracardi_agent_cycle_duration_seconds": (
        "gauge", "How long that cycle took."),
}
Sample = tuple[str, str, float]  # name, rendered labels, value


def label_text(**labels: str) -> str:
    """`{a="x",b="y"}` with the exposition format's escapes."""
    def escape(value: str) -> str:
        return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


DOCKER_LABELS = label_text(dependency="docker", address="docker.service")


def exposition(samples: Iterable[Sample]) -> str:
    """The text format: each name's HELP and TYPE once, then its samples."""
    by_name: dict[str, list[str]] = {name: [] for name in SERIES}
    for name, labels, value in samples:
        by_name[name].append(f"{name}{labels} {_number(value)}")
    lines = []
    for name, rows in by_name.items():
        if rows:
            kind, text = SERIES[name]
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *rows]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if isinstance(value, int):  # and bool: most samples, rendered without a float's cost
        return str(int(value))
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class Tally:
    """Counters the agent's history does not keep: what it did, by unit and reason, and
    the containers systemd replaced. (systemd's NRestarts is no help: the agent re-reads a
    unit's properties only when it sees its state change, and a restart takes less than a
    cycle.)"""

    restarts: Counter[tuple[str, str]] = field(default_factory=Counter)
    gave_up: Counter[str] = field(default_factory=Counter)
    systemd_restarts: Counter[str] = field(default_factory=Counter)
    containers: dict[str, str] = field(default_factory=dict)  # unit -> its last container
    agent_asked: set[str] = field(default_factory=set)  # restarted by the agent since then

    def add(self, observation: Observation, decision: Decision) -> None:
        for unit, view in observation.workers.items():
            container = view.container
            if container is None or not container.running:
                continue
            last = self.containers.get(unit)
            if last is not None and last != container.id and unit not in self.agent_asked:
                self.systemd_restarts[unit] += 1
            if last != container.id:
                self.agent_asked.discard(unit)
            self.containers[unit] = container.id
        for action in decision.actions:
            if action.kind in (ActionKind.RESTART, ActionKind.REARM):
                self.restarts[action.target, action.reason] += 1
                self.agent_asked.add(action.target)
        for entry in decision.entries:
            if entry.kind is EntryKind.GAVE_UP:
                self.gave_up[entry.fields.get("TRACARDI_UNIT", "")] += 1


@functools.lru_cache(maxsize=4096)
def _worker_labels(unit: str, worker: str, release: str) -> str:
    return label_text(unit=unit, worker=worker, release=release)


def worker_samples(agent: Agent, observation: Observation, history: History,
                   tally: Tally) -> list[Sample]:
    samples: list[Sample] = []
    for unit, view in observation.workers.items():
        tag = _worker_labels(unit, view.worker, agent.tracardi_version)
        past = history.workers.get(unit)
        running = view.container is not None and view.container.running
        samples += [
            ("tracardi_worker_up", tag, view.unit.active_state == "active"),
            ("tracardi_worker_container_running", tag, running),
            ("tracardi_worker_memory_limit_bytes", tag,
             agent.config.memory_limit(view.worker)),
            ("tracardi_worker_backoff", tag, past is not None and past.state is State.BACKOFF),
            ("tracardi_worker_backoff_attempts", tag, past.attempts if past else 0),
            ("tracardi_worker_gave_up_total", tag, tally.gave_up[unit]),
            ("tracardi_worker_systemd_restarts_total", tag, tally.systemd_restarts[unit]),
        ]
        if running and view.live is not None:
            samples.append(("tracardi_worker_live", tag, view.live))
        if view.memory is not None:
            samples.append(("tracardi_worker_memory_bytes", tag, view.memory))
    for (unit, reason), count in sorted(tally.restarts.items()):
        restarted = observation.workers.get(unit)
        if restarted is not None:
            samples.append(("tracardi_worker_agent_restarts_total", label_text(
                unit=unit, worker=restarted.worker, release=agent.tracardi_version,
                reason=reason), count))
    return samples


def queue_samples(observation: Observation, history: History,
                  work_wait: float) -> list[Sample]:
    """One set per queue, however many workers take from it."""
    readings: dict[str, QueueReading] = {}
    for view in observation.workers.values():
        if view.work is not None:
            for queue, reading in view.work.queues.items():
                readings[queue_key(view.work.redis, queue)] = reading
    samples: list[Sample] = []
    for key, reading in sorted(readings.items()):
        redis, queue = key.split(" ", 1)
        labels = label_text(redis=redis, queue=queue)
        wait = history.queues.get(key)
        waited = round(observation.now - wait.since) if wait else 0
        samples += [("tracardi_queue_messages", labels, reading.waiting),
                    ("tracardi_queue_oldest_wait_seconds", labels, waited),
                    ("tracardi_queue_stuck", labels,
                     bool(wait and wait.stuck_reported and waited >= work_wait))]
    return samples


def dependency_samples(needs: Iterable[Dependency],
                       reachable: dict[str, bool]) -> list[Sample]:
    """One series per dependency, labelled with its kind and the addresses it is probed at."""
    unique = {d.name: d for d in needs}
    return [("tracardi_dependency_reachable", label_text(
                dependency=name.split(" ", 1)[0],
                address=",".join(f"{host}:{port}" for host, port in d.addresses)),
             reachable.get(name, False))
            for name, d in sorted(unique.items())]


class MetricsFile:
    """Writes the agent's metrics into node_exporter's textfile directory after a cycle."""

    def __init__(self, directory: Path, heartbeat: float,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        self.path = directory / METRICS_FILE
        self.heartbeat = heartbeat
        self.clock, self.wall_clock = clock, wall_clock
        self.tally = Tally()
        self.problem = ""  # why the file is not written, said once to the journal
        self._written = ""  # the last body written, without the agent's clock
        self._written_at: float | None = None

    def after_cycle(self, agent: Agent, observation: Observation, decision: Decision,
                    duration: float) -> None:
        self.tally.add(observation, decision)
        body = exposition([
            *worker_samples(agent, observation, decision.history, self.tally),
            *dependency_samples((d for n in agent.needs.values() for d in n),
                                observation.dependencies),
            ("tracardi_dependency_reachable", DOCKER_LABELS, observation.docker_active),
            *queue_samples(observation, decision.history, agent.config.work_wait),
            ("tracardi_upgrade_in_flight", "",
             agent.upgrade is not None and agent.upgrade.running),
            ("tracardi_agent_heartbeat_seconds", "", self.heartbeat),
        ])
        now = self.clock()
        fresh = self._written_at is not None and now - self._written_at < self.heartbeat
        if body == self._written and fresh and not self.problem:
            return
        clock = exposition([("tracardi_agent_last_cycle_timestamp_seconds", "",
                             round(self.wall_clock(), 3)),
                            ("tracardi_agent_cycle_duration_seconds", "", round(duration, 6))])
        self._write(agent, body + clock)
        if not self.problem:
            self._written, self._written_at = body, now

    def _write(self, agent: Agent, text: str) -> None:
        if not self.path.parent.is_dir():
            self._say(agent, f"{self.path.parent} does not exist: no Prometheus metrics "
                      "(install prometheus-node-exporter, or give the agent --metrics-dir)")
            return
        try:
            write_atomic(self.path, text.encode(), durable=False)
        except OSError as exc:
            self._say(agent, f"{self.path} not written: {exc.strerror or exc}; restart "
                      "tracardi-agent if the directory was created after it started")
            return
        self.problem = ""

    def _say(self, agent: Agent, problem: str) -> None:
        if problem != self.problem:
            Entry.of(EntryKind.METRICS_UNWRITABLE, Priority.WARNING, problem,
                     TRACARDI_REASON="metrics file").send(agent.journal)
        self.problem = problem
