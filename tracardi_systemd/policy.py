"""The agent's policy: from what it observed, what it remembers and the time, what to do.

A pure function (`decide`) over explicit per-worker states, in the manner of supervisord:

    STARTING   unit active, its container not (yet) running, within the grace period
    RUNNING    unit active and its container running
    RESTARTING the agent asked systemd to (re)start the unit and waits for it
    BACKOFF    systemd gave up on the unit (failed); the agent re-arms it after a delay
    HELD       the unit needs Redis or Elasticsearch, which is unreachable: no restarts
    STOPPED    the unit is inactive: an operator stopped it, the agent leaves it alone

Events (journal entries) are returned with the actions, so every decision is reported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from tracardi_systemd.journal import ERROR, NOTICE, WARNING
from tracardi_systemd.observe import ContainerState, UnitState

OWNING_STATES = ("active", "activating", "deactivating", "reloading")


class State(Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    BACKOFF = "backoff"
    HELD = "held"
    STOPPED = "stopped"


class EventKind(Enum):
    """Each kind has a fixed journal MESSAGE_ID."""

    GAVE_UP = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a01"
    REARM = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a02"
    RESTART = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a03"
    ORPHAN_REMOVED = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a04"
    RECOVERED = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a05"
    UNREACHABLE = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a06"
    REACHABLE = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a07"
    HELD = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a08"
    HOST_PRESSURE = "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a09"


@dataclass(frozen=True)
class Config:
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    jitter: float = 0.2  # a re-arm waits backoff * (1 + jitter * random())
    stable_after: float = 300.0  # running this long resets the backoff
    grace: float = 15.0  # how long a container may be missing before the unit is restarted
    memory_limits: dict[str, int] = field(default_factory=dict)  # worker -> bytes
    default_memory_limit: int = 2 * 2**30
    memory_cycles: int = 3
    host_warn_percent: float = 90.0
    host_warn_every: float = 3600.0

    def memory_limit(self, worker: str) -> int:
        return self.memory_limits.get(worker, self.default_memory_limit)

    def backoff(self, attempts: int, random: float) -> float:
        # Bounded exponent: 2**attempts past ~1024 no longer fits a float (OverflowError),
        # and a worker failing for days reaches that; the cap was hit long before anyway.
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempts, 1000))
        return base * (1 + self.jitter * random)


@dataclass(frozen=True)
class WorkerView:
    unit: UnitState
    worker: str
    container: ContainerState | None
    memory: int | None
    needs: frozenset[str]  # dependency names: "redis", "elasticsearch"


@dataclass(frozen=True)
class Observation:
    now: float  # monotonic seconds
    workers: dict[str, WorkerView]
    containers: list[ContainerState]
    dependencies: dict[str, bool]  # name -> reachable
    host_memory_percent: float = 0.0
    docker_disk_percent: float = 0.0
    clock_time: str = ""  # the wall clock as HH:MM, for messages such as "down since 12:03"


@dataclass
class WorkerHistory:
    state: State = State.STARTING
    since: float = 0.0
    attempts: int = 0
    next_try: float = 0.0
    missing_since: float | None = None
    over_memory: int = 0
    agent_restarts: int = 0
    last_reason: str = ""
    failed_last_cycle: bool = False


@dataclass
class History:
    workers: dict[str, WorkerHistory] = field(default_factory=dict)
    down_since: dict[str, float] = field(default_factory=dict)
    down_at: dict[str, str] = field(default_factory=dict)  # HH:MM of going down
    orphans_seen: set[str] = field(default_factory=set)
    last_host_warning: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    kind: str  # "rearm", "restart", "remove"
    target: str  # a unit name, or a container id for "remove"
    reason: str


@dataclass(frozen=True)
class Event:
    kind: EventKind
    priority: int
    message: str
    fields: dict[str, str]


@dataclass
class Decision:
    actions: list[Action]
    events: list[Event]
    history: History


def decide(observation: Observation, history: History, config: Config,
           random: Callable[[], float]) -> Decision:
    """What to do now. Does not modify `history`; returns the next one."""
    decider = _Decider(observation, copy.deepcopy(history), config, random)
    decider.dependencies()
    for name, view in sorted(observation.workers.items()):
        decider.worker(name, view)
    decider.orphans()
    decider.host()
    return Decision(decider.actions, decider.events, decider.history)


class _Decider:
    def __init__(self, obs: Observation, history: History, config: Config,
                 random: Callable[[], float]):
        self.obs, self.history, self.config, self.random = obs, history, config, random
        self.now = obs.now
        self.actions: list[Action] = []
        self.events: list[Event] = []

    def _event(self, kind: EventKind, priority: int, message: str, **fields: str) -> None:
        self.events.append(Event(kind, priority, message, {
            "TRACARDI_ACTION": kind.name.lower(), **fields,
        }))

    def _enter(self, past: WorkerHistory, state: State) -> None:
        if past.state is not state:
            past.state, past.since = state, self.now

    def dependencies(self) -> None:
        for name, reachable in sorted(self.obs.dependencies.items()):
            down = name in self.history.down_since
            if not reachable and not down:
                self.history.down_since[name] = self.now
                self.history.down_at[name] = self.obs.clock_time
                self._event(EventKind.UNREACHABLE, ERROR,
                            f"{name} is unreachable: holding restarts of the workers that need it",
                            TRACARDI_DEPENDENCY=name, TRACARDI_REASON=f"{name} unreachable")
            elif reachable and down:
                seconds = self.now - self.history.down_since.pop(name)
                self.history.down_at.pop(name, None)
                self._event(EventKind.REACHABLE, NOTICE,
                            f"{name} is reachable again after {seconds:.0f} s",
                            TRACARDI_DEPENDENCY=name, TRACARDI_REASON=f"{name} reachable")

    def _missing_dependency(self, view: WorkerView) -> str | None:
        down = sorted(view.needs & self.history.down_since.keys())
        return down[0] if down else None

    def worker(self, unit: str, view: WorkerView) -> None:
        past = self.history.workers.setdefault(unit, WorkerHistory(since=self.now))
        fields = {"TRACARDI_UNIT": unit, "TRACARDI_WORKER": view.worker}
        state = view.unit.active_state
        # A failing unit passes through `failed` for a moment before systemd schedules its
        # restart: only a start limit hit, or a second failed cycle, means systemd gave up.
        gave_up = state == "failed" and (view.unit.start_limit_hit or past.failed_last_cycle)
        past.failed_last_cycle = state == "failed"
        if gave_up:
            self._failed(unit, view, past, fields)
        elif state == "failed":
            return
        elif state in ("active", "activating", "reloading"):
            self._active(unit, view, past, fields)
        else:
            past.missing_since = None
            past.over_memory = 0
            if past.state is not State.RESTARTING or self.now - past.since > self.config.grace:
                self._enter(past, State.STOPPED)

    def _failed(self, unit: str, view: WorkerView, past: WorkerHistory,
                fields: dict[str, str]) -> None:
        dependency = self._missing_dependency(view)
        if dependency:
            if past.state is not State.HELD:
                self._event(EventKind.HELD, WARNING,
                            f"{unit} failed while {dependency} is unreachable: held",
                            **fields, TRACARDI_REASON=f"{dependency} unreachable")
            self._enter(past, State.HELD)
            past.next_try = self.now  # re-arm as soon as the dependency is back
            return
        if past.state not in (State.BACKOFF, State.HELD):
            delay = self.config.backoff(past.attempts, self.random())
            past.next_try = self.now + delay
            past.last_reason = view.unit.result or "failed"
            self._enter(past, State.BACKOFF)
            self._event(EventKind.GAVE_UP, ERROR,
                        f"systemd gave up on {unit} ({past.last_reason}); re-arming in "
                        f"{delay:.0f} s (attempt {past.attempts + 1})",
                        **fields, TRACARDI_REASON=past.last_reason,
                        TRACARDI_BACKOFF_SEC=f"{delay:.1f}",
                        TRACARDI_ATTEMPT=str(past.attempts + 1))
            return
        if self.now >= past.next_try:
            held = past.state is State.HELD
            if not held:  # a hold does not burn the backoff
                past.attempts += 1
            past.agent_restarts += 1
            reason = "dependency back" if held else past.last_reason
            self.actions.append(Action("rearm", unit, reason))
            self._enter(past, State.RESTARTING)
            self._event(EventKind.REARM, WARNING,
                        f"re-arming {unit}: reset-failed and start (attempt {past.attempts})",
                        **fields, TRACARDI_REASON=reason, TRACARDI_ATTEMPT=str(past.attempts))

    def _active(self, unit: str, view: WorkerView, past: WorkerHistory,
                fields: dict[str, str]) -> None:
        container = view.container
        if container is not None and container.running:
            past.missing_since = None
            if past.state is not State.RUNNING:
                if past.state in (State.BACKOFF, State.RESTARTING, State.HELD):
                    self._event(EventKind.RECOVERED, NOTICE, f"{unit} is running again",
                                **fields, TRACARDI_REASON=past.last_reason or "recovered")
                self._enter(past, State.RUNNING)
            if self.now - past.since >= self.config.stable_after:
                past.attempts = 0
            self._memory(unit, view, past, fields)
            return
        past.over_memory = 0
        if view.unit.active_state != "active" or view.unit.sub_state != "running":
            return  # systemd itself is (re)starting it
        if past.missing_since is None:
            past.missing_since = self.now
        if past.state is not State.RESTARTING:
            self._enter(past, State.STARTING)
        if self.now - past.missing_since < self.config.grace:
            return
        dependency = self._missing_dependency(view)
        if dependency:
            self._enter(past, State.HELD)
            return
        self._restart(unit, past, fields, "container missing",
                      f"{unit} is active but its container has not been running for "
                      f"{self.now - past.missing_since:.0f} s")
        past.missing_since = None

    def _memory(self, unit: str, view: WorkerView, past: WorkerHistory,
                fields: dict[str, str]) -> None:
        limit = self.config.memory_limit(view.worker)
        if view.memory is None or view.memory <= limit:
            past.over_memory = 0
            return
        past.over_memory += 1
        if past.over_memory < self.config.memory_cycles:
            return
        past.over_memory = 0
        mib = view.memory / 2**20
        self._restart(unit, past, fields, "memory limit",
                      f"{unit} uses {mib:.0f} MiB, over its limit of {limit / 2**20:.0f} MiB "
                      f"for {self.config.memory_cycles} cycles",
                      TRACARDI_MEMORY_BYTES=str(view.memory), TRACARDI_LIMIT_BYTES=str(limit))

    def _restart(self, unit: str, past: WorkerHistory, fields: dict[str, str], reason: str,
                 message: str, **extra: str) -> None:
        past.agent_restarts += 1
        past.last_reason = reason
        self.actions.append(Action("restart", unit, reason))
        self._enter(past, State.RESTARTING)
        self._event(EventKind.RESTART, WARNING, f"restarting {unit}: {message}",
                    **fields, TRACARDI_REASON=reason, **extra)

    def orphans(self) -> None:
        owned = {name for name, view in self.obs.workers.items()
                 if view.unit.active_state in OWNING_STATES}
        orphans = {c.id: c for c in self.obs.containers
                   if c.unit not in owned or not c.is_units_own}
        for cid, container in sorted(orphans.items()):
            if cid in self.history.orphans_seen:
                self.actions.append(Action("remove", cid, "orphan container"))
                self._event(EventKind.ORPHAN_REMOVED, WARNING,
                            f"removing container {container.name}: no active unit owns it",
                            TRACARDI_CONTAINER=container.name, TRACARDI_UNIT=container.unit,
                            TRACARDI_WORKER=container.worker, TRACARDI_REASON="orphan container")
        # An orphan is removed on the second cycle that sees it, never on a passing race.
        self.history.orphans_seen = set(orphans) - {a.target for a in self.actions}

    def host(self) -> None:
        readings = {"memory": self.obs.host_memory_percent,
                    "docker disk": self.obs.docker_disk_percent}
        for what, percent in readings.items():
            last = self.history.last_host_warning.get(what)
            if percent < self.config.host_warn_percent:
                continue
            if last is not None and self.now - last < self.config.host_warn_every:
                continue
            self.history.last_host_warning[what] = self.now
            self._event(EventKind.HOST_PRESSURE, WARNING,
                        f"host {what} is {percent:.0f}% full",
                        TRACARDI_REASON=f"{what} {percent:.0f}%")


def summary(observation: Observation, history: History) -> str:
    """One line for STATUS=: workers running, and each dependency's state."""
    running = sum(1 for h in history.workers.values() if h.state is State.RUNNING)
    parts = [f"{running}/{len(observation.workers)} workers running"]
    for name, reachable in sorted(observation.dependencies.items()):
        since = history.down_at.get(name)
        if reachable:
            parts.append(f"{name} ok")
        else:
            parts.append(f"{name} unreachable since {since}" if since else f"{name} unreachable")
    return "; ".join(parts)
