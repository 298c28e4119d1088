"""The agent's policy: from what it observed, what it remembers and the time, what to do.

A pure function (`decide`) over explicit per-worker states, in the manner of supervisord:

    STARTING   unit active, its container not (yet) running, within the grace period
    RUNNING    unit active and its container running
    RESTARTING the agent asked systemd to (re)start the unit and waits for it
    BACKOFF    systemd gave up on the unit (failed); the agent re-arms it after a delay
    HELD       a dependency (Docker, Redis, Elasticsearch) is down: no restarts until it
               is back; a worker that Docker took down with it is started again then
    STOPPED    the unit is inactive: an operator stopped it, the agent leaves it alone

A state changes only through a named transition of TRANSITIONS, which says from which
states it may be taken and which journal entry reports it (supervisord's change_state,
_assertInState and event map in one table). Journal entries are returned with the actions,
so every decision is reported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from tracardi_systemd.agent.journal_ids import Entry, EntryKind
from tracardi_systemd.host.journal import Priority
from tracardi_systemd.observe.model import ContainerState, UnitState, WorkReading, queue_key

ERROR, WARNING, NOTICE = Priority.ERROR, Priority.WARNING, Priority.NOTICE
OWNING_STATES = ("active", "activating", "deactivating", "reloading")
DOCKER = "docker"
# A worker whose unit went inactive this close before docker.service left the active state
# was stopped by docker's stop (Requires=), not by an operator.
STOPPED_WITH_DOCKER_USEC = 30_000_000


class State(Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    BACKOFF = "backoff"
    HELD = "held"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Transition:
    to: State
    sources: frozenset[State]  # the states it may be taken from
    entry: EntryKind | None = None  # the journal entry that reports it, if any
    priority: Priority = Priority.INFO


ANY = frozenset(State)
TRANSITIONS = {
    # An operator stopped the unit (or it went inactive): the agent leaves it alone.
    "stop": Transition(State.STOPPED, ANY),
    # Docker went down with the worker (or stopped it); DOCKER_DOWN, one entry for all,
    # says so.
    "hold_for_docker": Transition(State.HELD, ANY),
    "hold_failed": Transition(State.HELD, ANY - {State.HELD}, EntryKind.HELD, WARNING),
    "hold_missing": Transition(State.HELD, ANY),
    "give_up": Transition(State.BACKOFF, ANY - {State.BACKOFF, State.HELD},
                          EntryKind.GAVE_UP, ERROR),
    "rearm": Transition(State.RESTARTING, frozenset({State.BACKOFF, State.HELD}),
                        EntryKind.REARM, WARNING),
    "start_after_docker": Transition(State.RESTARTING, ANY, EntryKind.REARM, WARNING),
    "restart": Transition(State.RESTARTING, ANY, EntryKind.RESTART, WARNING),
    "wait_for_container": Transition(State.STARTING, ANY - {State.RESTARTING}),
    "come_up": Transition(State.RUNNING, frozenset({State.STARTING, State.STOPPED})),
    "recover": Transition(State.RUNNING, frozenset({State.BACKOFF, State.RESTARTING,
                                                   State.HELD}), EntryKind.RECOVERED, NOTICE),
}


class InvalidTransition(AssertionError):
    """A transition taken from a state it does not start from: a bug in this module."""


class ActionKind(Enum):
    REARM = "rearm"  # reset-failed, then start: for a unit systemd gave up on or that is down
    RESTART = "restart"
    REMOVE = "remove"  # a container, by id


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
    # Seconds work may wait in a queue before its consumers are judged: one that does not
    # ask for work is restarted, one that does (or is busy) leaves the queue reported stuck.
    # 30 s plus a 10 s tick plus a Celery start stays within a minute of the first task.
    work_wait: float = 30.0
    # Podman kills a container whose health check fails (HealthOnFailure=kill) and its unit
    # restarts it: the agent only reports the verdict, or the worker would restart twice.
    engine_kills_not_live: bool = False

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
    # False for a worker that stays broken after its dependency's outage (Celery 5.2):
    # the agent restarts it once the dependency is back.
    recovers_after_outage: bool
    live: bool | None = None  # Docker's health check: False once it failed `retries` times
    not_live_reason: str = ""  # what a failed check means for this kind of worker
    work_signal: bool = False  # the catalog knows how it takes work from Redis
    work: WorkReading | None = None  # what Redis showed this tick; None: no reading


@dataclass(frozen=True)
class Observation:
    now: float  # monotonic seconds
    workers: dict[str, WorkerView]
    containers: list[ContainerState]
    dependencies: dict[str, bool]  # name -> reachable
    host_memory_percent: float = 0.0
    docker_disk_percent: float = 0.0
    clock_time: str = ""  # the wall clock as HH:MM, for messages such as "down since 12:03"
    docker: UnitState | None = None  # docker.service; None where the agent does not ask
    target_active: bool = True  # tracardi.target: inactive when an operator stopped it all
    # Units named by a container's label that the agent does not manage (a newer install's):
    # their ActiveState, so their containers are never taken for orphans.
    other_units: dict[str, str] = field(default_factory=dict)

    @property
    def docker_active(self) -> bool:
        return self.docker is None or self.docker.up


@dataclass
class Outage:
    """A dependency's outage as one worker lives it: HELD waiting for it, or running through
    it; `restart_when_back` for a worker that stays broken after it (Celery 5.2)."""

    dependency: str  # "docker", or an address such as "redis 127.0.0.1:6379"
    restart_when_back: bool = False


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
    not_live: str = ""  # the container whose failed liveness check the agent acted on
    outage: Outage | None = None
    work: str = ""  # live, not live, stuck, unknown; "" while there is no verdict


@dataclass
class QueueWait:
    """The oldest message of a queue as the agent watches it: a queue's wait restarts
    whenever its oldest message changes (one was taken) or it empties."""

    oldest: str
    since: float
    stuck_reported: bool = False  # cleared only when the queue is seen empty


@dataclass
class History:
    workers: dict[str, WorkerHistory] = field(default_factory=dict)
    down_since: dict[str, float] = field(default_factory=dict)
    down_at: dict[str, str] = field(default_factory=dict)  # HH:MM of going down
    orphans_seen: set[str] = field(default_factory=set)
    last_host_warning: dict[str, float] = field(default_factory=dict)
    queues: dict[str, QueueWait] = field(default_factory=dict)  # "<redis> <queue>" -> wait


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    target: str  # a unit name, or a container id for REMOVE
    reason: str


@dataclass
class Decision:
    actions: list[Action]
    entries: list[Entry]
    history: History


def decide(observation: Observation, history: History, config: Config,
           random: Callable[[], float]) -> Decision:
    """What to do now. Does not modify `history`; returns the next one."""
    decider = _Decider(observation, copy.deepcopy(history), config, random)
    decider.entries += _dependencies(observation, decider.history)
    _watch_queues(observation, decider.history)
    for name, view in sorted(observation.workers.items()):
        decider.worker(name, view)
    decider.after_outages()
    decider.entries += _stuck_queues(observation, decider.history, decider.stuck, config)
    if observation.docker_active:
        _orphans(observation, decider.history, decider.actions, decider.entries)
    decider.entries += _host_pressure(observation, decider.history, config)
    return Decision(decider.actions, decider.entries, decider.history)


class _Decider:
    def __init__(self, obs: Observation, history: History, config: Config,
                 random: Callable[[], float]):
        self.obs, self.history, self.config, self.random = obs, history, config, random
        self.now = obs.now
        self.actions: list[Action] = []
        self.entries: list[Entry] = []
        self.stuck: dict[str, set[str]] = {}  # queue key -> units whose consumer looks live

    def _entry(self, kind: EntryKind, priority: Priority, message: str, **fields: str) -> None:
        self.entries.append(Entry.of(kind, priority, message, **fields))

    def _act(self, kind: ActionKind, target: str, reason: str) -> None:
        self.actions.append(Action(kind, target, reason))

    def _move(self, past: WorkerHistory, name: str, message: str = "", **fields: str) -> None:
        """Take the named transition, reported by its journal entry when it has one."""
        transition = TRANSITIONS[name]
        if past.state not in transition.sources:
            raise InvalidTransition(f"{name} from {past.state.value}")
        if past.state is State.HELD and transition.to is not State.HELD and past.outage and (
                not past.outage.restart_when_back):
            past.outage = None  # what it waited for is over, for this worker
        if past.state is not transition.to:
            past.state, past.since = transition.to, self.now
        if transition.entry is not None:
            self._entry(transition.entry, transition.priority, message, **fields)

    def _hold(self, past: WorkerHistory, name: str, dependency: str, message: str = "",
              **fields: str) -> None:
        running_through = past.outage is not None and past.outage.restart_when_back
        past.outage = Outage(dependency, restart_when_back=running_through)
        self._move(past, name, message, **fields)

    def _missing_dependency(self, view: WorkerView) -> str | None:
        down = sorted(view.needs & self.history.down_since.keys())
        return down[0] if down else None

    def worker(self, unit: str, view: WorkerView) -> None:
        past = self.history.workers.setdefault(unit, WorkerHistory(since=self.now))
        fields = {"TRACARDI_UNIT": unit, "TRACARDI_WORKER": view.worker}
        state = view.unit.active_state
        past.work = ""
        if not self.obs.docker_active:
            self._docker_down(view, past)
            return
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
        elif self._stopped_by_docker(view, past):
            self._start_after_docker(unit, past, fields)
        else:
            past.missing_since = None
            past.over_memory = 0
            if past.state is not State.RESTARTING or self.now - past.since > self.config.grace:
                self._move(past, "stop")

    def _docker_down(self, view: WorkerView, past: WorkerHistory) -> None:
        """No restarts while docker.service is down; remember who was meant to run."""
        if past.state is not State.STOPPED or self._stopped_by_docker(view, past):
            past.last_reason = "docker down"
            self._hold(past, "hold_for_docker", DOCKER)
        past.missing_since = None
        past.failed_last_cycle = False

    def _stopped_by_docker(self, view: WorkerView, past: WorkerHistory) -> bool:
        """Inactive because docker.service stopped (Requires=), not by an operator's stop."""
        if view.unit.active_state != "inactive" or not self.obs.target_active:
            return False
        if past.state is State.HELD and past.outage and past.outage.dependency == DOCKER:
            return True
        docker = self.obs.docker
        if docker is None or not docker.deactivated_usec or not view.unit.inactive_since_usec:
            return False
        # docker.service leaves `active` only after the workers that require it stopped.
        before = docker.deactivated_usec - view.unit.inactive_since_usec
        return 0 <= before <= STOPPED_WITH_DOCKER_USEC and (
            view.unit.inactive_since_usec > view.unit.active_since_usec)

    def _start_after_docker(self, unit: str, past: WorkerHistory,
                            fields: dict[str, str]) -> None:
        if past.state is State.RESTARTING and self.now - past.since <= self.config.grace:
            return
        past.agent_restarts += 1
        past.last_reason = "docker back"
        self._act(ActionKind.REARM, unit, "docker back")
        self._move(past, "start_after_docker",
                   f"starting {unit}: docker.service stopped it and is running again",
                   **fields, TRACARDI_REASON="docker back")

    def _failed(self, unit: str, view: WorkerView, past: WorkerHistory,
                fields: dict[str, str]) -> None:
        dependency = self._missing_dependency(view)
        if dependency:
            if past.state is not State.HELD:
                self._hold(past, "hold_failed", dependency,
                           f"{unit} failed while {dependency} is unreachable: held",
                           **fields, TRACARDI_REASON=f"{dependency} unreachable")
            past.next_try = self.now  # re-arm as soon as the dependency is back
            return
        if past.state not in (State.BACKOFF, State.HELD):
            delay = self.config.backoff(past.attempts, self.random())
            past.next_try = self.now + delay
            past.last_reason = view.unit.result or "failed"
            self._move(past, "give_up",
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
            self._act(ActionKind.REARM, unit, reason)
            self._move(past, "rearm",
                       f"re-arming {unit}: reset-failed and start (attempt {past.attempts})",
                       **fields, TRACARDI_REASON=reason, TRACARDI_ATTEMPT=str(past.attempts))

    def _active(self, unit: str, view: WorkerView, past: WorkerHistory,
                fields: dict[str, str]) -> None:
        container = view.container
        if container is not None and container.running:
            self._running(unit, view, past, fields)
            return
        past.over_memory = 0
        if view.unit.active_state != "active" or view.unit.sub_state != "running":
            return  # systemd itself is (re)starting it
        if past.missing_since is None:
            past.missing_since = self.now
        if past.state is not State.RESTARTING:
            self._move(past, "wait_for_container")
        if self.now - past.missing_since < self.config.grace:
            return
        dependency = self._missing_dependency(view)
        if dependency:
            self._hold(past, "hold_missing", dependency)
            return
        self._restart(unit, past, fields, "container missing",
                      f"{unit} is active but its container has not been running for "
                      f"{self.now - past.missing_since:.0f} s")
        past.missing_since = None

    def _running(self, unit: str, view: WorkerView, past: WorkerHistory,
                 fields: dict[str, str]) -> None:
        past.missing_since = None
        dependency = self._missing_dependency(view)
        if dependency and not view.recovers_after_outage:
            past.outage = Outage(dependency, restart_when_back=True)
        if past.state is not State.RUNNING:
            recovering = past.state in TRANSITIONS["recover"].sources
            self._move(past, "recover" if recovering else "come_up",
                       f"{unit} is running again",
                       **fields, TRACARDI_REASON=past.last_reason or "recovered")
        if self.now - past.since >= self.config.stable_after:
            past.attempts = 0
        if not dependency:
            self._liveness(unit, view, past, fields)
            self._work(unit, view, past, fields)
        self._memory(unit, view, past, fields)

    def _liveness(self, unit: str, view: WorkerView, past: WorkerHistory,
                  fields: dict[str, str]) -> None:
        """Docker's health check counted the failures in a row; one verdict is enough, and
        one restart per container (the old one may still be stopping next cycle)."""
        container = view.container
        if view.live is not False or container is None or container.id == past.not_live:
            return
        past.not_live = container.id
        reason = view.not_live_reason or "its liveness check fails"
        killed = self.config.engine_kills_not_live
        then = "; Podman kills it and systemd starts it again" if killed else ""
        self._entry(EntryKind.NOT_LIVE, WARNING,
                    f"{unit} runs but is not working: {reason}{then}",
                    **fields, TRACARDI_REASON="liveness check failed")
        if not killed:
            self._restart(unit, past, fields, "liveness check failed", reason)

    def _work(self, unit: str, view: WorkerView, past: WorkerHistory,
              fields: dict[str, str]) -> None:
        """Work-based liveness: work has waited `work_wait` while this container ran, and
        it neither asks for work nor looks busy with work it took: not live."""
        reading, container = view.work, view.container
        if not view.work_signal:
            past.work = "unknown"
            return
        if reading is None or container is None:
            return
        threshold = self.config.work_wait
        # The wait counts from this container's start too: a new one gets its own chance.
        waiting = {key: self.now - max(wait.since, past.since)
                   for key in reading.queue_keys() if (wait := self.history.queues.get(key))}
        if not waiting or max(waiting.values()) < threshold:
            past.work = "live"
            return
        asking = reading.consuming_idle is not None and reading.consuming_idle < threshold
        # kombu stops BRPOP while its prefetch is full: the worker still holds its broadcast
        # subscription, and the messages it took wait unacknowledged in Redis.
        busy = reading.broadcast and reading.reserved > 0
        if asking or busy:
            past.work = "stuck"
            for key in waiting:
                self.stuck.setdefault(key, set()).add(unit)
            return
        past.work = "not live"
        if container.id == past.not_live:
            return  # one restart per container: the old one may still be stopping
        past.not_live = container.id
        waited = max(waiting.values())
        idle = ("holds no connection asking for it" if reading.consuming_idle is None else
                f"has not asked Redis for work for {reading.consuming_idle} s")
        reason = f"work has waited {waited:.0f} s in its queue and it {idle}"
        self._entry(EntryKind.NOT_LIVE, WARNING, f"{unit} runs but is not working: {reason}",
                    **fields, TRACARDI_REASON="not taking work",
                    TRACARDI_WAIT_SEC=f"{waited:.0f}")
        self._restart(unit, past, fields, "not taking work", reason)

    def after_outages(self) -> None:
        """Restart, one per cycle, the workers that do not recover from a dependency's outage."""
        down = self.history.down_since.keys()
        waiting = sorted(
            unit for unit, past in self.history.workers.items()
            if past.outage and past.outage.restart_when_back and unit in self.obs.workers
            and not self.obs.workers[unit].needs & down)
        if not waiting:
            return
        unit = waiting[0]
        past = self.history.workers[unit]
        outage, past.outage = past.outage, None
        view = self.obs.workers[unit]
        if past.state is not State.RUNNING or outage is None:
            return  # not running: its own start will connect afresh
        fields = {"TRACARDI_UNIT": unit, "TRACARDI_WORKER": view.worker}
        self._restart(unit, past, fields, f"{outage.dependency} back",
                      f"{outage.dependency} is back after an outage, and {view.worker} does "
                      "not recover from one by itself")

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
        if any(a.target == unit for a in self.actions):
            return  # one action per unit and cycle
        past.agent_restarts += 1
        past.last_reason = reason
        self._act(ActionKind.RESTART, unit, reason)
        self._move(past, "restart", f"restarting {unit}: {message}",
                   **fields, TRACARDI_REASON=reason, **extra)


def _dependencies(obs: Observation, history: History) -> list[Entry]:
    """Note each dependency that went down or came back (Docker among them)."""
    entries = []
    readings = {**obs.dependencies, DOCKER: obs.docker_active}
    for name, reachable in sorted(readings.items()):
        down = name in history.down_since
        if not reachable and not down:
            history.down_since[name] = obs.now
            history.down_at[name] = obs.clock_time
            if name == DOCKER:
                entries.append(Entry.of(
                    EntryKind.DOCKER_DOWN, ERROR,
                    "docker.service is not running: the workers are down with it; they are "
                    "started again when it is back",
                    TRACARDI_DEPENDENCY=name, TRACARDI_REASON="docker down"))
            else:
                entries.append(Entry.of(
                    EntryKind.UNREACHABLE, ERROR,
                    f"{name} is unreachable: holding restarts of the workers that need it",
                    TRACARDI_DEPENDENCY=name, TRACARDI_REASON=f"{name} unreachable"))
        elif reachable and down:
            seconds = obs.now - history.down_since.pop(name)
            history.down_at.pop(name, None)
            kind = EntryKind.DOCKER_BACK if name == DOCKER else EntryKind.REACHABLE
            what = "docker.service is running" if name == DOCKER else f"{name} is reachable"
            entries.append(Entry.of(kind, NOTICE, f"{what} again after {seconds:.0f} s",
                                    TRACARDI_DEPENDENCY=name, TRACARDI_REASON=f"{name} back"))
    return entries


def _watch_queues(obs: Observation, history: History) -> None:
    """Since when each queue's oldest message has waited, as far as the agent has seen."""
    for view in obs.workers.values():
        if view.work is None:
            continue
        for queue, seen in view.work.queues.items():
            key = queue_key(view.work.redis, queue)
            wait = history.queues.get(key)
            if not seen.waiting:
                history.queues.pop(key, None)
            elif wait is None or wait.oldest != seen.oldest:
                history.queues[key] = QueueWait(seen.oldest, obs.now,
                                                stuck_reported=bool(wait and wait.stuck_reported))


def _stuck_queues(obs: Observation, history: History, stuck: dict[str, set[str]],
                  config: Config) -> list[Entry]:
    """A queue whose work waits while every consumer looks live: reported once until it is
    seen empty; nothing is restarted for it (a restart would not take the work faster)."""
    entries = []
    for key, units in sorted(stuck.items()):
        wait = history.queues[key]
        not_live = [u for u, v in obs.workers.items() if v.work and key in v.work.queue_keys()
                    and history.workers[u].work == "not live"]
        if wait.stuck_reported or not_live:
            continue
        wait.stuck_reported = True
        redis, queue = key.split(" ", 1)
        waited = obs.now - wait.since
        entries.append(Entry.of(
            EntryKind.QUEUE_STUCK, WARNING,
            f"queue {queue} on redis {redis}: work has waited {waited:.0f} s (over "
            f"{config.work_wait:.0f} s) while its consumers ({', '.join(sorted(units))}) "
            "look live: busy with long tasks, or too few workers",
            TRACARDI_QUEUE=queue, TRACARDI_REDIS=redis, TRACARDI_WAIT_SEC=f"{waited:.0f}",
            TRACARDI_UNIT=" ".join(sorted(units)), TRACARDI_REASON="queue stuck"))
    return entries


def _orphans(obs: Observation, history: History, actions: list[Action],
             entries: list[Entry]) -> None:
    """Remove the labelled containers no active unit owns, on the second cycle that sees
    each (never on a passing race)."""
    owned = {name for name, view in obs.workers.items()
             if view.unit.active_state in OWNING_STATES}
    owned |= {name for name, state in obs.other_units.items() if state in OWNING_STATES}
    orphans = {c.id: c for c in obs.containers if c.unit not in owned or not c.is_units_own}
    for cid, container in sorted(orphans.items()):
        if cid in history.orphans_seen:
            actions.append(Action(ActionKind.REMOVE, cid, "orphan container"))
            entries.append(Entry.of(
                EntryKind.ORPHAN_REMOVED, WARNING,
                f"removing container {container.name}: no active unit owns it",
                TRACARDI_CONTAINER=container.name, TRACARDI_UNIT=container.unit,
                TRACARDI_WORKER=container.worker, TRACARDI_REASON="orphan container"))
    history.orphans_seen = set(orphans) - {a.target for a in actions}


def _host_pressure(obs: Observation, history: History, config: Config) -> list[Entry]:
    """A warning, at most once per `host_warn_every`, when memory or Docker's disk is full."""
    entries = []
    readings = {"memory": obs.host_memory_percent, "docker disk": obs.docker_disk_percent}
    for what, percent in readings.items():
        last = history.last_host_warning.get(what)
        if percent < config.host_warn_percent:
            continue
        if last is not None and obs.now - last < config.host_warn_every:
            continue
        history.last_host_warning[what] = obs.now
        entries.append(Entry.of(EntryKind.HOST_PRESSURE, WARNING,
                                f"host {what} is {percent:.0f}% full",
                                TRACARDI_REASON=f"{what} {percent:.0f}%"))
    return entries


def settled(observation: Observation, history: History) -> bool:
    """Nothing in flux: every unit running with its container or stopped, none seen failed
    in the last look (that needs a second one), every dependency up, no orphan waiting for
    its second look. Until then the agent asks systemd every tick: a unit between two
    states (auto-restart, activating) may settle without any Docker event to tell."""
    for view in observation.workers.values():
        unit = view.unit
        running = (unit.active_state, unit.sub_state) == ("active", "running") and (
            view.container is not None and view.container.running)
        if not running and unit.active_state != "inactive":
            return False
    return (not history.down_since and not history.orphans_seen
            and all(h.state in (State.RUNNING, State.STOPPED) and not h.failed_last_cycle
                    for h in history.workers.values()))


def summary(observation: Observation, history: History) -> str:
    """One line for STATUS=: workers running, Docker when it is down, each dependency."""
    running = sum(1 for h in history.workers.values() if h.state is State.RUNNING)
    parts = [f"{running}/{len(observation.workers)} workers running"]
    if not observation.docker_active:
        parts.append(_down(DOCKER, "down", history))
    for name, reachable in sorted(observation.dependencies.items()):
        parts.append(f"{name} ok" if reachable else _down(name, "unreachable", history))
    return "; ".join(parts)


def _down(name: str, word: str, history: History) -> str:
    since = history.down_at.get(name)
    return f"{name} {word} since {since}" if since else f"{name} {word}"
