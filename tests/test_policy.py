"""The agent's policy, driven through every transition with a fake clock (plain floats) and a
fixed random function: no sleeps, no host."""

from __future__ import annotations

import copy
import re
from dataclasses import replace

import pytest

from tracardi_systemd.agent.journal_ids import EntryKind
from tracardi_systemd.agent.policy import (
    TRANSITIONS,
    ActionKind,
    Config,
    Decision,
    History,
    InvalidTransition,
    Observation,
    State,
    WorkerHistory,
    WorkerView,
    _Decider,
    decide,
    summary,
)
from tracardi_systemd.host.journal import Priority
from tracardi_systemd.observe.model import ContainerState, UnitState
from tracardi_systemd.spec.catalog import RECOVERS_AFTER_OUTAGE

SCHEDULER = "tracardi-scheduler.service"
TRIGGER = "tracardi-trigger.service"
UPDATE = "tracardi-update.service"
CORE = frozenset({"redis", "elasticsearch"})
ALL_UP = {"redis": True, "elasticsearch": True}
HALF = 0.5  # the fixed random(): jitter factor 1 + 0.2 * 0.5 = 1.1


def unit(name: str, active: str = "active", sub: str = "running",
         result: str = "success") -> UnitState:
    return UnitState(name=name, active_state=active, sub_state=sub,
                     result=result, restarts=0, active_since_usec=1)


def worker_name(unit_name: str) -> str:
    return unit_name.removeprefix("tracardi-").removesuffix(".service")


def container(unit_name: str, status: str = "running", cid: str | None = None) -> ContainerState:
    name = unit_name.removesuffix(".service")
    return ContainerState(id=cid or f"id-{name}", name=name, unit=unit_name,
                          worker=worker_name(unit_name), status=status, pid=200,
                          started_at="2024-01-01T00:00:00Z", image=f"tracardi/{name}:0.8.1")


def view(unit_name: str, active: str = "active", sub: str = "running", result: str = "success",
         status: str | None = "running", memory: int | None = None,
         needs: frozenset[str] = CORE) -> WorkerView:
    return WorkerView(
        unit=unit(unit_name, active, sub, result), worker=worker_name(unit_name),
        container=container(unit_name, status) if status else None, memory=memory, needs=needs,
        recovers_after_outage=RECOVERS_AFTER_OUTAGE,
    )


def failed(unit_name: str, needs: frozenset[str] = CORE) -> WorkerView:
    return view(unit_name, "failed", "failed", "start-limit-hit", status=None, needs=needs)


def healthy(unit_name: str, memory: int | None = None,
            needs: frozenset[str] = CORE) -> WorkerView:
    return view(unit_name, memory=memory, needs=needs)


class Sim:
    """Carries the history from one decision to the next, like the agent's loop."""

    def __init__(self, config: Config | None = None, random: float = HALF):
        self.config = config or Config()
        self.random = random
        self.history = History()
        self.decisions: list[Decision] = []

    def step(self, now: float, *views: WorkerView, containers: list[ContainerState] | None = None,
             dependencies: dict[str, bool] | None = None, host_memory: float = 0.0,
             disk: float = 0.0) -> Decision:
        workers = {v.unit.name: v for v in views}
        if containers is None:
            containers = [v.container for v in views if v.container is not None]
        observation = Observation(
            now=now, workers=workers, containers=containers,
            dependencies=ALL_UP if dependencies is None else dependencies,
            host_memory_percent=host_memory, docker_disk_percent=disk,
        )
        decision = decide(observation, self.history, self.config, lambda: self.random)
        self.history = decision.history
        self.decisions.append(decision)
        return decision

    def past(self, unit_name: str) -> WorkerHistory:
        return self.history.workers[unit_name]


def kinds(decision: Decision) -> list[EntryKind]:
    return [e.kind for e in decision.entries]


def acts(decision: Decision) -> list[tuple[str, str]]:
    return [(a.kind.value, a.target) for a in decision.actions]


def one_event(decision: Decision, kind: EntryKind):
    found = [e for e in decision.entries if e.kind is kind]
    assert len(found) == 1, decision.entries
    return found[0]


# --- a healthy host ----------------------------------------------------------------------


def test_healthy_host_needs_no_action_and_no_event():
    sim = Sim()
    units = [SCHEDULER, TRIGGER, UPDATE, "tracardi-segmentation.service",
             "tracardi-post-collection.service"]
    for now in range(0, 1000, 5):
        decision = sim.step(float(now), *(healthy(u, memory=50 * 2**20) for u in units))
        assert decision.actions == []
        assert decision.entries == []
    assert {u: sim.past(u).state for u in units} == dict.fromkeys(units, State.RUNNING)


# --- systemd gave up: backoff, re-arm ----------------------------------------------------


def test_failed_unit_is_rearmed_after_the_backoff():
    sim = Sim()
    first = sim.step(0.0, failed(SCHEDULER))
    assert first.actions == []
    gave_up = one_event(first, EntryKind.GAVE_UP)
    assert gave_up.priority is Priority.ERROR
    assert gave_up.fields["TRACARDI_UNIT"] == SCHEDULER
    assert gave_up.fields["TRACARDI_WORKER"] == "scheduler"
    assert gave_up.fields["TRACARDI_REASON"] == "start-limit-hit"
    assert gave_up.fields["TRACARDI_BACKOFF_SEC"] == "11.0"  # 10 s * (1 + 0.2 * 0.5)
    assert sim.past(SCHEDULER).state is State.BACKOFF
    assert sim.past(SCHEDULER).next_try == pytest.approx(11.0)

    for now in (5.0, 10.0, 10.99):
        waiting = sim.step(now, failed(SCHEDULER))
        assert (waiting.actions, waiting.entries) == ([], [])
        assert sim.past(SCHEDULER).state is State.BACKOFF

    rearm = sim.step(11.0, failed(SCHEDULER))
    assert acts(rearm) == [("rearm", SCHEDULER)]
    assert rearm.actions[0].reason == "start-limit-hit"
    event = one_event(rearm, EntryKind.REARM)
    assert event.priority is Priority.WARNING
    assert event.fields["TRACARDI_ACTION"] == "rearm"
    assert event.fields["TRACARDI_UNIT"] == SCHEDULER
    assert event.fields["TRACARDI_WORKER"] == "scheduler"
    assert event.fields["TRACARDI_REASON"] == "start-limit-hit"
    past = sim.past(SCHEDULER)
    assert (past.state, past.attempts, past.agent_restarts) == (State.RESTARTING, 1, 1)

    # systemd starts it; once it runs, that is a recovery
    recovered = sim.step(12.0, healthy(SCHEDULER))
    assert recovered.actions == []
    assert kinds(recovered) == [EntryKind.RECOVERED]
    assert recovered.entries[0].priority is Priority.NOTICE
    assert sim.past(SCHEDULER).state is State.RUNNING


def test_a_failed_state_seen_once_is_systemd_on_its_way_to_a_restart():
    """systemd 252 shows `failed` (Result=exit-code) for a moment between a crash and the
    scheduled restart, and keeps exit-code even when the start limit then stops it."""
    sim = Sim()
    passing = view(SCHEDULER, "failed", "failed", "exit-code", status=None)
    first = sim.step(0.0, passing)
    assert first.actions == [] and first.entries == []
    sim.step(5.0, healthy(SCHEDULER))
    assert sim.step(10.0, passing).entries == []
    second = sim.step(15.0, passing)
    assert kinds(second) == [EntryKind.GAVE_UP]


def fail_repeatedly(sim: Sim, rounds: int, start: float = 0.0) -> tuple[list[float], float]:
    """Fail, wait the backoff, re-arm, fail again... Returns the delays and the time."""
    delays, now = [], start
    for _ in range(rounds):
        decision = sim.step(now, failed(SCHEDULER))
        assert kinds(decision) == [EntryKind.GAVE_UP]
        delay = sim.past(SCHEDULER).next_try - now
        assert float(decision.entries[0].fields["TRACARDI_BACKOFF_SEC"]) == pytest.approx(
            delay, abs=0.05)
        delays.append(delay)
        assert sim.step(now + delay - 0.01, failed(SCHEDULER)).actions == []
        now += delay
        assert acts(sim.step(now, failed(SCHEDULER))) == [("rearm", SCHEDULER)]
        now += 1.0
        # systemd tries again and hits its start limit again
        assert sim.step(now, view(SCHEDULER, "activating", "auto-restart", status=None)).actions \
            == []
        now += 1.0
    return delays, now


@pytest.mark.parametrize(("random", "factor"), [(0.0, 1.0), (0.5, 1.1), (0.999, 1.1998)])
def test_backoff_doubles_up_to_the_cap_with_jitter(random, factor):
    sim = Sim(Config(backoff_initial=10.0, backoff_max=300.0, jitter=0.2), random=random)
    delays, _ = fail_repeatedly(sim, 8)
    bases = [10, 20, 40, 80, 160, 300, 300, 300]
    assert delays == pytest.approx([b * factor for b in bases])
    assert sim.past(SCHEDULER).attempts == 8


@pytest.mark.parametrize("attempts", [0, 1, 3, 5, 10, 60])
@pytest.mark.parametrize("random", [0.0, 0.25, 0.5, 0.999999])
def test_backoff_stays_within_its_jitter_bounds(attempts, random):
    config = Config(backoff_initial=10.0, backoff_max=300.0, jitter=0.2)
    base = min(300.0, 10.0 * 2**attempts)
    delay = config.backoff(attempts, random)
    assert base <= delay < base * 1.2 + 1e-9


def test_backoff_after_very_many_attempts_stays_at_the_cap():
    """A worker failing for days must not crash the agent (2**attempts overflowing a float)."""
    config = Config(backoff_initial=10.0, backoff_max=300.0, jitter=0.2)
    assert config.backoff(5000, 0.5) == pytest.approx(330.0)
    history = History(workers={SCHEDULER: WorkerHistory(state=State.RESTARTING,
                                                        attempts=5000)})
    observation = Observation(now=0.0, workers={SCHEDULER: failed(SCHEDULER)}, containers=[],
                              dependencies=ALL_UP)
    decision = decide(observation, history, config, lambda: HALF)
    assert decision.history.workers[SCHEDULER].next_try == pytest.approx(330.0)


def test_attempts_reset_after_running_stable_after_seconds():
    sim = Sim(Config(stable_after=300.0))
    _, now = fail_repeatedly(sim, 3)
    assert sim.past(SCHEDULER).attempts == 3
    running_from = now
    sim.step(running_from, healthy(SCHEDULER))
    sim.step(running_from + 299.0, healthy(SCHEDULER))
    assert sim.past(SCHEDULER).attempts == 3  # not stable yet
    sim.step(running_from + 300.0, healthy(SCHEDULER))
    assert sim.past(SCHEDULER).attempts == 0

    again = sim.step(running_from + 400.0, failed(SCHEDULER))
    assert again.entries[0].fields["TRACARDI_BACKOFF_SEC"] == "11.0"  # back to the first step
    assert again.entries[0].fields["TRACARDI_ATTEMPT"] == "1"


def test_a_short_run_does_not_reset_the_backoff():
    sim = Sim(Config(stable_after=300.0))
    _, now = fail_repeatedly(sim, 2)
    sim.step(now, healthy(SCHEDULER))
    sim.step(now + 100.0, healthy(SCHEDULER))
    decision = sim.step(now + 101.0, failed(SCHEDULER))
    assert decision.entries[0].fields["TRACARDI_BACKOFF_SEC"] == "44.0"  # 40 s * 1.1
    assert decision.entries[0].fields["TRACARDI_ATTEMPT"] == "3"


# --- an active unit without its container -----------------------------------------------


@pytest.mark.parametrize("status", [None, "exited", "created"])
def test_missing_container_restarts_the_unit_after_the_grace_period(status):
    sim = Sim(Config(grace=15.0))
    sim.step(0.0, healthy(SCHEDULER))
    for now in (10.0, 20.0, 24.99):
        decision = sim.step(now, view(SCHEDULER, status=status))
        assert (decision.actions, decision.entries) == ([], [])
        assert sim.past(SCHEDULER).state is State.STARTING
    decision = sim.step(25.0, view(SCHEDULER, status=status))
    assert acts(decision) == [("restart", SCHEDULER)]
    assert decision.actions[0].reason == "container missing"
    event = one_event(decision, EntryKind.RESTART)
    assert event.priority is Priority.WARNING
    assert event.fields["TRACARDI_ACTION"] == "restart"
    assert event.fields["TRACARDI_REASON"] == "container missing"
    assert event.fields["TRACARDI_UNIT"] == SCHEDULER
    past = sim.past(SCHEDULER)
    assert (past.state, past.agent_restarts, past.last_reason) == (
        State.RESTARTING, 1, "container missing")

    # the grace period starts over: no restart on every cycle
    assert sim.step(30.0, view(SCHEDULER, status=status)).actions == []
    assert acts(sim.step(45.0, view(SCHEDULER, status=status))) == [("restart", SCHEDULER)]


def test_container_back_within_the_grace_period_needs_nothing():
    sim = Sim(Config(grace=15.0))
    sim.step(0.0, view(SCHEDULER, status=None))
    sim.step(10.0, view(SCHEDULER, status=None))
    assert sim.step(14.0, healthy(SCHEDULER)).actions == []
    assert sim.step(100.0, view(SCHEDULER, status=None)).actions == []  # a fresh grace period


@pytest.mark.parametrize(("active", "sub"), [
    ("activating", "auto-restart"), ("activating", "start-pre"), ("activating", "start"),
    ("reloading", "running"), ("active", "exited"),
])
def test_unit_systemd_is_restarting_is_left_alone(active, sub):
    sim = Sim(Config(grace=15.0))
    for now in range(0, 600, 5):
        decision = sim.step(float(now), view(SCHEDULER, active, sub, status=None))
        assert (decision.actions, decision.entries) == ([], [])


@pytest.mark.parametrize(("active", "sub"), [("inactive", "dead"), ("deactivating", "stop")])
def test_operator_stopped_unit_is_left_alone(active, sub):
    sim = Sim()
    sim.step(0.0, healthy(SCHEDULER))
    for now in range(5, 2000, 5):
        decision = sim.step(float(now), view(SCHEDULER, active, sub, status=None))
        assert (decision.actions, decision.entries) == ([], [])
        assert sim.past(SCHEDULER).state is State.STOPPED


def test_unit_restarting_after_the_agent_asked_is_not_taken_for_stopped():
    sim = Sim(Config(grace=15.0))
    sim.step(0.0, view(SCHEDULER, status=None))
    assert acts(sim.step(15.0, view(SCHEDULER, status=None))) == [("restart", SCHEDULER)]
    sim.step(16.0, view(SCHEDULER, "inactive", "dead", status=None))
    assert sim.past(SCHEDULER).state is State.RESTARTING
    sim.step(31.0, view(SCHEDULER, "inactive", "dead", status=None))
    assert sim.past(SCHEDULER).state is State.STOPPED


# --- orphan containers --------------------------------------------------------------------


def test_orphan_is_removed_on_the_second_cycle_that_sees_it():
    sim = Sim()
    stopped = view(SCHEDULER, "inactive", "dead", status=None)
    orphan = container(SCHEDULER, cid="c0ffee")
    first = sim.step(0.0, stopped, containers=[orphan])
    assert first.actions == []
    assert first.entries == []
    second = sim.step(5.0, stopped, containers=[orphan])
    assert acts(second) == [("remove", "c0ffee")]
    event = one_event(second, EntryKind.ORPHAN_REMOVED)
    assert event.priority is Priority.WARNING
    assert event.fields["TRACARDI_CONTAINER"] == "tracardi-scheduler"
    assert event.fields["TRACARDI_UNIT"] == SCHEDULER
    assert event.fields["TRACARDI_WORKER"] == "scheduler"
    assert event.fields["TRACARDI_REASON"] == "orphan container"


def test_container_of_an_unmanaged_unit_is_an_orphan():
    sim = Sim()
    stray = container("tracardi-unknown.service", cid="stray")
    assert sim.step(0.0, healthy(SCHEDULER), containers=[stray]).actions == []
    decision = sim.step(5.0, healthy(SCHEDULER),
                        containers=[stray, container(SCHEDULER)])
    assert acts(decision) == [("remove", "stray")]


def test_orphan_seen_in_cycles_that_are_not_consecutive_is_not_removed():
    sim = Sim()
    stopped = view(SCHEDULER, "inactive", "dead", status=None)
    orphan = container(SCHEDULER, cid="c0ffee")
    sim.step(0.0, stopped, containers=[orphan])
    sim.step(5.0, stopped, containers=[])
    assert sim.step(10.0, stopped, containers=[orphan]).actions == []


def test_orphan_claimed_by_a_starting_unit_is_not_removed():
    sim = Sim()
    orphan = container(SCHEDULER, cid="c0ffee")
    sim.step(0.0, view(SCHEDULER, "inactive", "dead", status=None), containers=[orphan])
    decision = sim.step(5.0, view(SCHEDULER, "activating", "start", status=None),
                        containers=[orphan])
    assert decision.actions == []


@pytest.mark.parametrize("status", ["running", "exited", "created"])
def test_container_owned_by_an_active_unit_is_never_removed(status):
    sim = Sim()
    for now in range(0, 100, 5):
        decision = sim.step(float(now), view(SCHEDULER, status=status))
        assert not [a for a in decision.actions if a.kind is ActionKind.REMOVE]


def test_hand_started_container_with_an_active_units_label_is_an_orphan():
    sim = Sim()
    impostor = ContainerState(id="beef", name="ghost", unit=SCHEDULER, worker="scheduler",
                              status="running", pid=300, started_at="", image="x:1")
    own = healthy(SCHEDULER)
    sim.step(0.0, own, containers=[own.container, impostor])
    second = sim.step(5.0, own, containers=[own.container, impostor])
    assert acts(second) == [("remove", "beef")]


# --- memory ------------------------------------------------------------------------------


def test_memory_over_the_limit_for_memory_cycles_restarts_the_worker():
    sim = Sim(Config(default_memory_limit=100 * 2**20, memory_cycles=3))
    over = 150 * 2**20
    assert sim.step(0.0, healthy(SCHEDULER, memory=over)).actions == []
    assert sim.step(5.0, healthy(SCHEDULER, memory=over)).actions == []
    decision = sim.step(10.0, healthy(SCHEDULER, memory=over))
    assert acts(decision) == [("restart", SCHEDULER)]
    assert decision.actions[0].reason == "memory limit"
    event = one_event(decision, EntryKind.RESTART)
    assert event.priority is Priority.WARNING
    assert event.fields["TRACARDI_MEMORY_BYTES"] == str(over)
    assert event.fields["TRACARDI_LIMIT_BYTES"] == str(100 * 2**20)
    assert "150 MiB" in event.message
    assert "100 MiB" in event.message
    assert sim.past(SCHEDULER).last_reason == "memory limit"
    # the count starts over after the restart
    assert sim.step(15.0, healthy(SCHEDULER, memory=over)).actions == []


def test_a_dip_below_the_limit_resets_the_count():
    limit = 100 * 2**20
    sim = Sim(Config(default_memory_limit=limit, memory_cycles=3))
    readings = [limit + 1, limit + 1, limit, limit + 1, limit + 1]  # exactly the limit is fine
    for i, memory in enumerate(readings):
        assert sim.step(5.0 * i, healthy(SCHEDULER, memory=memory)).actions == []
    assert acts(sim.step(30.0, healthy(SCHEDULER, memory=limit + 1))) == [("restart", SCHEDULER)]


def test_unknown_memory_resets_the_count():
    sim = Sim(Config(default_memory_limit=100, memory_cycles=2))
    sim.step(0.0, healthy(SCHEDULER, memory=200))
    sim.step(5.0, healthy(SCHEDULER, memory=None))
    assert sim.step(10.0, healthy(SCHEDULER, memory=200)).actions == []


def test_per_worker_memory_limits_override_the_default():
    config = Config(default_memory_limit=100, memory_limits={"scheduler": 1000},
                    memory_cycles=1)
    sim = Sim(config)
    decision = sim.step(0.0, healthy(SCHEDULER, memory=500), healthy(TRIGGER, memory=500))
    assert acts(decision) == [("restart", TRIGGER)]
    assert acts(sim.step(5.0, healthy(SCHEDULER, memory=1001))) == [("restart", SCHEDULER)]


# --- dependencies ------------------------------------------------------------------------


def test_dependency_down_holds_the_units_that_need_it():
    sim = Sim()
    needs_redis = failed(SCHEDULER, needs=CORE)
    needs_elastic_only = failed(TRIGGER, needs=frozenset({"elasticsearch"}))
    redis_down = {"redis": False, "elasticsearch": True}

    all_events, trigger_rearms = [], 0
    for now in range(0, 200, 5):
        decision = sim.step(float(now), needs_redis, needs_elastic_only, dependencies=redis_down)
        all_events += decision.entries
        assert ("rearm", SCHEDULER) not in acts(decision)
        trigger_rearms += acts(decision).count(("rearm", TRIGGER))
        assert sim.past(SCHEDULER).state is State.HELD
        assert sim.past(SCHEDULER).attempts == 0
    unreachable = [e for e in all_events if e.kind is EntryKind.UNREACHABLE]
    assert len(unreachable) == 1
    assert unreachable[0].priority is Priority.ERROR
    assert unreachable[0].fields["TRACARDI_DEPENDENCY"] == "redis"
    held = [e for e in all_events if e.kind is EntryKind.HELD]
    assert [e.fields["TRACARDI_UNIT"] for e in held] == [SCHEDULER]
    assert held[0].fields["TRACARDI_REASON"] == "redis unreachable"
    assert not [e for e in all_events if e.kind is EntryKind.GAVE_UP
                and e.fields["TRACARDI_UNIT"] == SCHEDULER]
    assert trigger_rearms >= 2  # the unit that does not need Redis is still re-armed

    back = sim.step(200.0, needs_redis, needs_elastic_only, dependencies=ALL_UP)
    reachable = one_event(back, EntryKind.REACHABLE)
    assert reachable.fields["TRACARDI_DEPENDENCY"] == "redis"
    assert reachable.priority is Priority.NOTICE
    assert "200 s" in reachable.message
    assert ("rearm", SCHEDULER) in acts(back)  # right away, no backoff
    rearm = next(a for a in back.actions if a.target == SCHEDULER)
    assert rearm.reason == "dependency back"
    assert sim.past(SCHEDULER).attempts == 0  # the hold did not burn the backoff

    later = [sim.step(now, healthy(SCHEDULER), healthy(TRIGGER)) for now in (205.0, 210.0)]
    assert not [e for d in later for e in d.entries
                if e.kind in (EntryKind.REACHABLE, EntryKind.UNREACHABLE)]


def test_dependency_going_down_during_a_backoff_holds_the_rearm():
    sim = Sim()
    sim.step(0.0, failed(SCHEDULER))
    assert sim.past(SCHEDULER).state is State.BACKOFF
    down = {"redis": False, "elasticsearch": True}
    for now in (5.0, 11.0, 50.0, 100.0):
        decision = sim.step(now, failed(SCHEDULER), dependencies=down)
        assert decision.actions == []
    assert sim.past(SCHEDULER).attempts == 0
    assert acts(sim.step(105.0, failed(SCHEDULER))) == [("rearm", SCHEDULER)]


def test_dependency_back_before_the_backoff_ends_rearms_at_once():
    sim = Sim()
    sim.step(0.0, failed(SCHEDULER))
    assert sim.past(SCHEDULER).next_try == pytest.approx(11.0)
    sim.step(2.0, failed(SCHEDULER), dependencies={"redis": False, "elasticsearch": True})
    assert sim.past(SCHEDULER).state is State.HELD
    back = sim.step(4.0, failed(SCHEDULER))
    assert acts(back) == [("rearm", SCHEDULER)]
    assert back.actions[0].reason == "dependency back"


def test_missing_container_is_not_restarted_while_a_dependency_is_down():
    sim = Sim(Config(grace=15.0))
    down = {"redis": True, "elasticsearch": False}
    for now in range(0, 100, 5):
        decision = sim.step(float(now), view(SCHEDULER, status=None), dependencies=down)
        assert decision.actions == []
    assert sim.past(SCHEDULER).state is State.HELD
    assert acts(sim.step(100.0, view(SCHEDULER, status=None))) == [("restart", SCHEDULER)]


def test_each_dependency_is_reported_once_down_and_once_back():
    sim = Sim()
    pattern = [ALL_UP, {"redis": False, "elasticsearch": True},
               {"redis": False, "elasticsearch": False}, {"redis": False, "elasticsearch": False},
               {"redis": True, "elasticsearch": False}, ALL_UP, ALL_UP]
    seen = []
    for i, deps in enumerate(pattern):
        decision = sim.step(5.0 * i, healthy(SCHEDULER), dependencies=deps)
        seen += [(e.kind, e.fields["TRACARDI_DEPENDENCY"]) for e in decision.entries
                 if "TRACARDI_DEPENDENCY" in e.fields]
    assert seen == [
        (EntryKind.UNREACHABLE, "redis"),
        (EntryKind.UNREACHABLE, "elasticsearch"),
        (EntryKind.REACHABLE, "redis"),
        (EntryKind.REACHABLE, "elasticsearch"),
    ]


# --- host pressure -----------------------------------------------------------------------


def test_host_pressure_is_warned_about_once_per_period():
    sim = Sim(Config(host_warn_percent=90.0, host_warn_every=3600.0))
    first = sim.step(0.0, healthy(SCHEDULER), host_memory=95.0)
    event = one_event(first, EntryKind.HOST_PRESSURE)
    assert event.priority is Priority.WARNING
    assert "memory" in event.message
    assert "95%" in event.message
    assert first.actions == []
    for now in (5.0, 1000.0, 3599.0):
        assert sim.step(now, healthy(SCHEDULER), host_memory=95.0).entries == []
    assert kinds(sim.step(3600.0, healthy(SCHEDULER), host_memory=95.0)) == [
        EntryKind.HOST_PRESSURE]


def test_disk_pressure_is_warned_about_separately():
    sim = Sim(Config(host_warn_percent=90.0))
    sim.step(0.0, healthy(SCHEDULER), host_memory=95.0)
    decision = sim.step(5.0, healthy(SCHEDULER), host_memory=95.0, disk=97.0)
    event = one_event(decision, EntryKind.HOST_PRESSURE)
    assert "docker disk" in event.message


def test_no_warning_below_the_threshold():
    sim = Sim(Config(host_warn_percent=90.0))
    assert sim.step(0.0, healthy(SCHEDULER), host_memory=89.9, disk=89.9).entries == []


# --- purity, identities, priorities, summary ---------------------------------------------


def test_decide_does_not_modify_the_history_it_is_given():
    sim = Sim(Config(default_memory_limit=100, memory_cycles=5))
    sim.step(0.0, failed(SCHEDULER), view(TRIGGER, status=None), healthy(UPDATE, memory=200),
             containers=[container("tracardi-gone.service", cid="x")],
             dependencies={"redis": False, "elasticsearch": True}, host_memory=99.0)
    before = copy.deepcopy(sim.history)
    observation = Observation(
        now=500.0,
        workers={SCHEDULER: failed(SCHEDULER), TRIGGER: view(TRIGGER, status=None),
                 UPDATE: healthy(UPDATE, memory=200)},
        containers=[container("tracardi-gone.service", cid="x")],
        dependencies=ALL_UP, host_memory_percent=99.0,
    )
    decision = decide(observation, sim.history, sim.config, lambda: HALF)
    assert decision.actions  # it did decide something
    assert decision.history != before
    assert sim.history == before


def test_every_event_kind_has_its_own_message_id():
    ids = [kind.value for kind in EntryKind]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_every_event_carries_its_action_name():
    sim = Sim()
    decision = sim.step(0.0, failed(SCHEDULER), dependencies={"redis": False})
    for event in decision.entries:
        assert event.fields["TRACARDI_ACTION"] == event.kind.name.lower()
        assert event.fields["TRACARDI_REASON"]


def test_summary_counts_running_workers_and_names_each_dependency():
    units = [SCHEDULER, TRIGGER, UPDATE, "tracardi-segmentation.service",
             "tracardi-post-collection.service"]
    sim = Sim()
    views = [replace(healthy(u), recovers_after_outage=True) for u in units]
    deps = {"redis": True, "elasticsearch": False}
    sim.step(0.0, *views, dependencies=deps)
    observation = Observation(now=0.0, workers={v.unit.name: v for v in views}, containers=[],
                              dependencies=deps)
    text = summary(observation, sim.history)
    parts = text.split("; ")
    assert parts[0] == "5/5 workers running"
    assert sorted(parts[1:]) == ["elasticsearch unreachable", "redis ok"]

    views[0] = failed(SCHEDULER)
    views[1] = view(TRIGGER, status=None)
    sim.step(5.0, *views)
    observation = Observation(now=5.0, workers={v.unit.name: v for v in views}, containers=[],
                              dependencies=ALL_UP)
    assert summary(observation, sim.history) == (
        "3/5 workers running; elasticsearch ok; redis ok")


def test_summary_says_since_when_a_dependency_is_down():
    views = {SCHEDULER: replace(healthy(SCHEDULER), recovers_after_outage=True)}
    history = History()
    for now, clock, redis in ((0.0, "12:03", False), (5.0, "12:04", False)):
        observation = Observation(now=now, workers=views, containers=[],
                                  dependencies={"redis": redis}, clock_time=clock)
        history = decide(observation, history, Config(), lambda: HALF).history
    assert summary(observation, history) == "1/1 workers running; redis unreachable since 12:03"
    back = Observation(now=10.0, workers=views, containers=[], dependencies={"redis": True},
                       clock_time="12:05")
    history = decide(back, history, Config(), lambda: HALF).history
    assert summary(back, history) == "1/1 workers running; redis ok"


def test_a_unit_seen_failed_once_keeps_the_agent_looking_at_systemd_every_tick():
    from tracardi_systemd.agent.policy import settled

    sim = Sim()
    running = healthy(SCHEDULER)
    sim.step(0.0, running)
    assert settled(observe(running), sim.history)
    failing = view(SCHEDULER, "failed", "failed", "exit-code", status=None)
    sim.step(10.0, failing)
    assert not settled(observe(failing), sim.history)  # a second look decides: gave up?


def test_a_unit_between_two_states_keeps_the_agent_looking_even_if_it_ran_before():
    from tracardi_systemd.agent.policy import settled

    sim = Sim()
    sim.step(0.0, healthy(SCHEDULER))
    restarting = view(SCHEDULER, "activating", "auto-restart", status=None)
    sim.step(10.0, restarting)
    assert not settled(observe(restarting), sim.history)


def observe(*views: WorkerView) -> Observation:
    return Observation(now=0.0, workers={v.unit.name: v for v in views}, containers=[],
                       dependencies={})


# --- the transition table ---------------------------------------------------------------


def test_a_transition_from_a_state_it_does_not_start_from_is_refused():
    decider = _Decider(Observation(now=0.0, workers={}, containers=[], dependencies={}),
                       History(), Config(), lambda: 0.0)
    with pytest.raises(InvalidTransition, match="rearm from running"):
        decider._move(WorkerHistory(state=State.RUNNING), "rearm", "re-arming")
    assert decider.entries == []


def test_every_state_is_entered_and_left_by_named_transitions():
    entered = {t.to for t in TRANSITIONS.values()}
    left = {s for t in TRANSITIONS.values() for s in t.sources if s is not t.to}
    assert entered == set(State) and left == set(State)


def test_each_reported_transition_has_its_own_priority():
    reported = [t for t in TRANSITIONS.values() if t.entry is not None]
    assert {t.entry for t in reported} == {EntryKind.HELD, EntryKind.GAVE_UP, EntryKind.REARM,
                                           EntryKind.RESTART, EntryKind.RECOVERED}
    assert all(t.priority <= Priority.NOTICE for t in reported)
