"""The watchdog agent's loop: observe, decide (policy.decide), act, report, notify.

Everything it decides comes from `policy`; this module only gathers the observation with a
fixed number of host calls, carries out the actions, writes the journal entries, publishes
its view for `status`, and talks sd_notify with systemd. It reads the manifest and the env
file again whenever either changes, so a later `install` never leaves it on stale data.

A supervisor must outlive its side channels: a state file it cannot write, a journal that
is gone, a docker.service that an operator stopped. None of them ends a cycle.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil
import sdnotify  # type: ignore[import-untyped]

from tracardi_systemd.agent.journal_ids import Entry, EntryKind
from tracardi_systemd.agent.policy import (
    DOCKER,
    OWNING_STATES,
    Action,
    ActionKind,
    Config,
    Decision,
    History,
    Observation,
    WorkerView,
    decide,
    settled,
    summary,
)
from tracardi_systemd.agent.watch import Stop, Watcher
from tracardi_systemd.host.cgroup import ContainersMemory
from tracardi_systemd.host.commands import CommandError, ContainerSource, SystemctlClient
from tracardi_systemd.host.engine import EngineError
from tracardi_systemd.host.journal import Journal, Priority
from tracardi_systemd.host.runtimes import RUNTIME_HOSTS, ContainerRuntime
from tracardi_systemd.install.files import write_atomic
from tracardi_systemd.install.inflight import UpgradeInFlight
from tracardi_systemd.install.manifest import Manifest, ManifestError, load_manifest_file
from tracardi_systemd.names import AGENT_STATE_FILE, TARGET, is_worker_unit
from tracardi_systemd.names import worker_of_unit as unit_worker_name
from tracardi_systemd.observe.agent_state import AgentReport, WorkerReport
from tracardi_systemd.observe.model import ContainerState, UnitState, WorkReading
from tracardi_systemd.observe.read import ContainerReader, by_unit, memory_by_pid, read_units
from tracardi_systemd.observe.work import Consumer, read_work
from tracardi_systemd.spec.addresses import Dependency, dependencies_of
from tracardi_systemd.spec.catalog import RECOVERS_AFTER_OUTAGE, REDIS, Worker, workers_for
from tracardi_systemd.spec.envfile import load_env_file

DependencyProbe = Callable[[list[Dependency]], dict[str, bool]]
# Told of every cycle that acted (metrics, the failure hook): the agent, what it saw and
# decided, and how long the cycle took in seconds.
AfterCycle = Callable[["Agent", Observation, Decision, float], None]
WorkProbe = Callable[[list[Consumer], str], dict[str, WorkReading]]


def worker_of(unit: str, workers: dict[str, Worker]) -> Worker | None:
    """tracardi-scheduler.service and tracardi-scheduler@2.service belong to `scheduler`."""
    return workers.get(unit_worker_name(unit)) if is_worker_unit(unit) else None


def needs_of(worker: Worker | None, settings: dict[str, str],
             network: str | None) -> list[Dependency]:
    return dependencies_of(worker, settings, network) if worker else []


@dataclass
class Inputs:
    """What the agent works from: the installed manifest and the env file's settings."""

    manifest: Manifest
    env_values: dict[str, str]


class InputFiles:
    """The manifest and the env file, read again only when one of them changed on disk."""

    def __init__(self, manifest: Path, env_file: Path):
        self.manifest, self.env_file = manifest, env_file
        self._seen: tuple = ()

    def _fingerprint(self) -> tuple:
        marks: list[tuple[int, int, int] | None] = []
        for path in (self.manifest, self.env_file):
            try:
                stat = path.stat()
                marks.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
            except OSError:
                marks.append(None)
        return tuple(marks)

    def read_if_changed(self) -> Inputs | None:
        """Fresh inputs when a file changed since the last read; None otherwise.

        Raises ManifestError when the manifest cannot be read.
        """
        mark = self._fingerprint()
        if mark == self._seen:
            return None
        manifest = load_manifest_file(self.manifest)
        if manifest is None:
            raise ManifestError(f"{self.manifest} is missing: nothing is installed")
        settings = load_env_file(self.env_file).values
        self._seen = mark
        return Inputs(manifest, settings)


@dataclass
class Agent:
    inputs: InputFiles
    systemctl: SystemctlClient
    engine: ContainerSource
    probe: DependencyProbe
    journal: Journal
    config: Config
    runtime: ContainerRuntime = RUNTIME_HOSTS["docker"]
    state_file: Path = AGENT_STATE_FILE
    clock: Callable[[], float] = time.monotonic
    read_work: WorkProbe = read_work
    history: History = field(default_factory=History)
    state_problem: str = ""  # why the state file could not be written, while it cannot
    after_cycle: list[AfterCycle] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reader = ContainerReader(self.engine)
        self.read_memory = ContainersMemory()
        self.systemd_view: dict[str, UnitState] = {}  # as of the last reconcile
        self.systemd_view_stale = True
        self._published = AgentReport()  # the view last written to the state file
        self.tracardi_version = ""
        self.units: list[str] = []
        self.workers: dict[str, Worker | None] = {}
        self.needs: dict[str, list[Dependency]] = {}
        self.redis_password = ""
        self.upgrade: UpgradeInFlight | None = None  # as the manifest records it
        self._upgrade_seen: tuple[UpgradeInFlight, bool] | None = None  # reported so
        fresh = self.inputs.read_if_changed()
        if fresh is not None:
            self._use(fresh)

    def _use(self, inputs: Inputs) -> None:
        catalog = {w.name: w for w in workers_for(inputs.manifest.tracardi_version)}
        self.tracardi_version = inputs.manifest.tracardi_version
        self.units = [u for u in inputs.manifest.units if is_worker_unit(u)]
        self.workers = {u: worker_of(u, catalog) for u in self.units}
        network = inputs.manifest.options.get("network")  # as the containers would reach
        network = network if isinstance(network, str) else None
        self.needs = {u: needs_of(w, inputs.env_values, network) for u, w in self.workers.items()}
        self.redis_password = inputs.env_values.get("REDIS_PASSWORD", "")
        self.upgrade = inputs.manifest.in_flight

    def upgrade_running(self) -> bool:
        """While an upgrade runs, its gate has the workers: the agent restarts and re-arms
        none of them (the two would fight over the same units). Each change is reported."""
        record = self.upgrade
        running = record is not None and record.running
        if record is not None and self._upgrade_seen != (record, running):
            self._upgrade_seen = (record, running)
            if running:
                self._report(EntryKind.UPGRADE_RUNNING, Priority.NOTICE,
                             f"{record.describe()} is running (pid {record.pid}): the workers "
                             "are left to its gate until it ends", TRACARDI_REASON="upgrade")
            else:
                self._report(EntryKind.UPGRADE_INTERRUPTED, Priority.WARNING,
                             f"{record.describe()} was interrupted (pid {record.pid} is "
                             "gone): workers may run either tag; run  tracardi-systemd "
                             f"upgrade --rollback  to put every worker back on "
                             f"{record.from_tag}", TRACARDI_REASON="upgrade interrupted")
        return running

    def reload_if_changed(self) -> None:
        try:
            fresh = self.inputs.read_if_changed()
        except ManifestError as exc:
            self._report(EntryKind.CYCLE_FAILED, Priority.ERROR,
                         f"keeping the last manifest: {exc}", TRACARDI_REASON="manifest")
            return
        if fresh is None:
            return
        before = set(self.units)
        self._use(fresh)
        added, removed = sorted(set(self.units) - before), sorted(before - set(self.units))
        self._forget(removed)
        self._report(EntryKind.RELOADED, Priority.NOTICE,
                     f"read the installed manifest and env file again ({len(self.units)} "
                     f"worker units; added: {', '.join(added) or 'none'}; removed: "
                     f"{', '.join(removed) or 'none'})", TRACARDI_REASON="inputs changed")

    def _forget(self, removed: list[str]) -> None:
        """Units gone from the manifest, and outages of services no unit needs any more:
        kept, they would stay in the state file and, in backoff, keep the agent asking
        systemd every tick."""
        for unit in removed:
            self.history.workers.pop(unit, None)
            self.systemd_view.pop(unit, None)
        needed = {DOCKER} | {d.name for needs in self.needs.values() for d in needs}
        for name in set(self.history.down_since) - needed:
            del self.history.down_since[name]
            self.history.down_at.pop(name, None)

    def observe(self, refresh_systemd: bool = True) -> Observation:
        """What the host says now. systemd's view costs a client process, so it is asked
        again only when told to, when something happened, or while docker is down (the
        Engine API must not be asked then: docker.socket would start docker again)."""
        if refresh_systemd or self.systemd_view_stale or not self._docker_active():
            self.systemd_view = self._read_systemd()
            self.systemd_view_stale = False
        shown = self.systemd_view
        containers = self.reader.read() if self._docker_active() else []
        owned = by_unit(containers)
        memory = memory_by_pid((c.pid for c in owned.values() if c.running), self.read_memory)
        work = self.read_work(self._consumers(owned), self.redis_password)
        views = {}
        for name in self.units:
            container = owned.get(name)
            worker = self.workers[name]
            views[name] = WorkerView(
                unit=shown[name],
                worker=worker.name if worker else "",
                container=container,
                memory=memory.get(container.pid) if container and container.running else None,
                needs=frozenset(d.name for d in self.needs[name]),
                recovers_after_outage=(worker.recovers_after_outage if worker
                                       else RECOVERS_AFTER_OUTAGE),
                live=container.live if container else None,
                not_live_reason=worker.liveness.why if worker and worker.liveness else "",
                work_signal=bool(worker and worker.work),
                work=work.get(name),
            )
        return Observation(
            now=self.clock(),
            workers=views,
            containers=containers,
            dependencies=self.probe([d for needs in self.needs.values() for d in needs]),
            host_memory_percent=psutil.virtual_memory().percent,
            docker_disk_percent=_disk_percent(self.runtime.data_dir),
            clock_time=time.strftime("%H:%M"),
            docker=shown[self.runtime.daemon] if self.runtime.daemon else None,
            target_active=shown[TARGET].active_state in OWNING_STATES,
            other_units=self._other_units(containers),
        )

    def _read_systemd(self) -> dict[str, UnitState]:
        daemon = self.runtime.daemon
        if daemon is None:
            return read_units(self.systemctl, [*self.units, TARGET], self.systemd_view)
        # The jobs before the states: a stop of docker that ends between the two reads
        # then leaves it inactive, not `active` with no job queued, when the workers it
        # took down are already deactivating.
        job = self.systemctl.jobs().get(daemon, "")
        view = read_units(self.systemctl, [*self.units, daemon, TARGET], self.systemd_view,
                          judged_by=[daemon])
        if view[daemon].active_state == "active":  # a queued stop matters only then
            view[daemon] = replace(view[daemon], job=job)
        return view

    def _consumers(self, owned: dict[str, ContainerState]) -> list[Consumer]:
        """The running containers of workers that take work from a Redis queue."""
        found = []
        for unit in self.units:
            worker, container = self.workers[unit], owned.get(unit)
            redis = [d for d in self.needs[unit] if d.name.startswith(f"{REDIS} ")]
            if worker and worker.work and container and container.running and redis:
                consumer = Consumer(unit, container.pid, worker.work, redis[0].addresses[0],
                                    shared=container.network == "host")
                found.append(replace(consumer, judged=self._wait_near_verdict(consumer)))
        return found

    def _wait_near_verdict(self, consumer: Consumer) -> bool:
        """Work in its queues has waited half of --work-wait: its connections are read
        from the next tick on, so the tick that reaches the wait has them."""
        now, half = self.clock(), self.config.work_wait / 2
        return any(now - wait.since >= half for key in consumer.queue_keys()
                   if (wait := self.history.queues.get(key)))

    def _docker_active(self) -> bool:
        """Whether the engine may be asked: on Docker while docker.service is up; always
        on Podman."""
        if self.runtime.daemon is None:
            return True
        daemon = self.systemd_view.get(self.runtime.daemon)
        return daemon is not None and daemon.up

    def _other_units(self, containers: list) -> dict[str, str]:
        """The state of units that containers name but the manifest does not (one call)."""
        unknown = sorted({c.unit for c in containers if c.unit and c.unit not in self.workers})
        unknown = [u for u in unknown if is_worker_unit(u)]
        if not unknown:
            return {}
        states: dict[str, UnitState] = read_units(self.systemctl, unknown)
        return {name: state.active_state for name, state in states.items()}

    def cycle(self, dry_run: bool = False,
              refresh_systemd: bool = True) -> tuple[Observation, Decision]:
        started = time.perf_counter()
        if not dry_run:
            self.reload_if_changed()
        observation = self.observe(refresh_systemd)
        decision = decide(observation, self.history, self.config, random.random)
        if dry_run:
            return observation, decision
        if self.upgrade_running():
            done = Decision([], [], self.history)  # the gate has the workers: nothing done
        else:
            done = decision
            for action in decision.actions:
                self._act(action)
            for entry in decision.entries:
                entry.send(self.journal)
            self.history = decision.history
        self._publish(observation)
        for step in self.after_cycle:
            step(self, observation, done, time.perf_counter() - started)
        return observation, decision

    def _act(self, action: Action) -> None:
        steps: dict[ActionKind, Callable[[str], object]] = {
            ActionKind.REARM: self._rearm,
            ActionKind.RESTART: lambda unit: self.systemctl("restart", "--no-block", unit),
            ActionKind.REMOVE: self.engine.remove,
        }
        self.systemd_view_stale = True  # what was done shows there next cycle
        try:
            steps[action.kind](action.target)
        except (CommandError, EngineError) as exc:
            self._report(EntryKind.ACTION_FAILED, Priority.ERROR,
                         f"{action.kind.value} {action.target} failed: {exc}",
                         TRACARDI_ACTION=f"{action.kind.value}-failed",
                         TRACARDI_REASON=action.reason)

    def _rearm(self, unit: str) -> None:
        self.systemctl("reset-failed", unit)
        self.systemctl("start", "--no-block", unit)

    def _report(self, kind: EntryKind, priority: Priority, message: str, **fields: str) -> None:
        Entry.of(kind, priority, message, **fields).send(self.journal)

    def status_line(self, observation: Observation) -> str:
        parts = [summary(observation, self.history), self.state_problem]
        if self.upgrade is not None and self.upgrade.running:
            parts.append(f"{self.upgrade.describe()} running: its gate has the workers, "
                         "the agent leaves them alone")
        if self.journal.lost:
            parts.append(f"journal unreachable: {self.journal.lost} entries lost")
        return "; ".join(part for part in parts if part)

    def _publish(self, observation: Observation) -> None:
        view = AgentReport(
            summary=summary(observation, self.history),
            workers={
                unit: WorkerReport(
                    state=h.state.value, restarts=h.agent_restarts, last_reason=h.last_reason,
                    work=h.work,
                    dependencies={name: observation.dependencies.get(name, False)
                                  for name in sorted(observation.workers[unit].needs)}
                    if unit in observation.workers else {})
                for unit, h in self.history.workers.items()
            },
        )
        if view == self._published and not self.state_problem and self.state_file.is_file():
            return  # unchanged and still there: no encoding, no write, no fsync, every tick
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.state_file, view.to_json())
            self._published = view
        except OSError as exc:
            problem = f"state file {self.state_file} not written: {exc.strerror or exc}"
            if problem != self.state_problem:
                self._report(EntryKind.STATE_UNWRITABLE, Priority.WARNING,
                             f"{problem}; `tracardi-systemd status` shows no agent view "
                             "until it can be written; supervising goes on",
                             TRACARDI_REASON="state file")
            self.state_problem = problem
        else:
            self.state_problem = ""

    def run(self, stop: Stop, watcher: Watcher, interval: float,
            reconcile_every: float) -> None:
        """Tick every `interval` (memory, dependencies, Docker's containers: cheap), ask
        systemd every `reconcile_every` or whenever something happened or is in flux, and
        wake at once on a Docker event. READY after the first full cycle; WATCHDOG after
        every tick that completed."""
        notifier = sdnotify.SystemdNotifier()
        ready, next_reconcile, in_flux = False, 0.0, True
        while not stop.is_set():
            reconcile = self.clock() >= next_reconcile or in_flux
            try:
                observation, _ = self.cycle(refresh_systemd=reconcile)
            except (CommandError, EngineError, OSError) as exc:
                # No WATCHDOG=1 for an incomplete cycle: if this persists, systemd restarts us.
                self.systemd_view_stale = True
                self._report(EntryKind.CYCLE_FAILED, Priority.ERROR, f"cycle failed: {exc}",
                             TRACARDI_REASON=str(exc))
            else:
                in_flux = not settled(observation, self.history)
                if reconcile:
                    next_reconcile = self.clock() + reconcile_every
                first = "" if ready else "READY=1\n"
                notifier.notify(f"{first}WATCHDOG=1\nSTATUS={self.status_line(observation)}")
                ready = True
            # A stale view may still say `active` while docker stops: a connection then
            # would start it again through docker.socket.
            fresh_active = self._docker_active() and not self.systemd_view_stale
            if watcher.wait(self.clock() + interval, stop, fresh_active):
                self.systemd_view_stale = True  # a container changed: ask systemd too
        notifier.notify("STOPPING=1")


def _disk_percent(path: str) -> float:
    try:
        return psutil.disk_usage(path).percent
    except OSError:
        return 0.0


def host_call_timeout(default: float = 10.0) -> float:
    """Seconds a host call may take: well inside systemd's watchdog when it set one."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    return min(default, int(usec) / 1e6 / 5) if usec.isdigit() and int(usec) else default


def stop_on_signals() -> Stop:
    stop = Stop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop.handle)
    return stop
