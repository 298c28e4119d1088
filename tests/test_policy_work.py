"""Work-based liveness and the stuck queue in the agent's policy: fake clock, no host."""

from __future__ import annotations

from dataclasses import replace

from test_policy import UPDATE, Sim, acts, container, healthy, kinds, one_event

from tracardi_systemd.agent.journal_ids import EntryKind
from tracardi_systemd.agent.policy import Config, WorkerView
from tracardi_systemd.observe.model import QueueReading, WorkReading

REDIS = "127.0.0.1:6379"
UPDATE_2 = "tracardi-update@2.service"


def working(unit: str = UPDATE, waiting: int = 0, oldest: str = "m1",
            consuming_idle: int | None = 0, broadcast: bool = True, reserved: int = 0,
            cid: str | None = None) -> WorkerView:
    reading = WorkReading(REDIS, {"celery": QueueReading(waiting, oldest if waiting else "")},
                          consuming_idle, broadcast, reserved)
    base = healthy(unit, needs=frozenset({"redis"}))
    return replace(base, work_signal=True, work=reading,
                   container=container(unit, cid=cid) if cid else base.container)


def test_a_worker_that_asks_for_work_is_live_however_long_its_queue_waits():
    sim = Sim()
    for now in range(0, 300, 10):
        decision = sim.step(float(now), working(waiting=3, consuming_idle=0))
        assert decision.actions == []
    assert sim.past(UPDATE).work == "stuck"


def test_an_idle_queue_never_restarts_a_worker_whose_brpop_is_old():
    sim = Sim()
    for now in range(0, 600, 10):
        decision = sim.step(float(now), working(waiting=0, consuming_idle=None,
                                                broadcast=False))
        assert decision.actions == [] and decision.entries == []
    assert sim.past(UPDATE).work == "live"


def test_the_kombu_hang_is_restarted_once_work_waited_the_threshold():
    """No PSUBSCRIBE, BRPOP idle: the kombu 5.3.2 hang (README-celery.md)."""
    sim = Sim(Config(work_wait=30))
    sim.step(0.0, working())
    sim.step(10.0, working(waiting=1, consuming_idle=25, broadcast=False))
    assert sim.step(39.0, working(waiting=1, consuming_idle=54, broadcast=False)).actions == []
    decision = sim.step(40.0, working(waiting=1, consuming_idle=55, broadcast=False))
    assert acts(decision) == [("restart", UPDATE)]
    assert kinds(decision) == [EntryKind.NOT_LIVE, EntryKind.RESTART]
    assert one_event(decision, EntryKind.NOT_LIVE).fields["TRACARDI_REASON"] == "not taking work"
    assert sim.past(UPDATE).work == "not live"
    # The same container, still seen next tick: no second restart.
    assert sim.step(45.0, working(waiting=1, consuming_idle=60, broadcast=False)).actions == []


def test_the_ping_answering_variant_is_not_live_too():
    """PSUBSCRIBE held (pings answered), no consuming connection, nothing reserved."""
    sim = Sim(Config(work_wait=30))
    sim.step(0.0, working(waiting=1, consuming_idle=None, broadcast=True))
    decision = sim.step(31.0, working(waiting=1, consuming_idle=None, broadcast=True))
    assert acts(decision) == [("restart", UPDATE)]
    assert "holds no connection asking for it" in one_event(decision, EntryKind.NOT_LIVE).message


def test_a_full_prefetch_is_busy_not_hung_and_its_queue_is_reported_stuck_once():
    sim = Sim(Config(work_wait=30))
    busy = dict(waiting=5, consuming_idle=40, broadcast=True, reserved=8)
    sim.step(0.0, working(**busy))
    entries = []
    for now in range(10, 400, 10):
        decision = sim.step(float(now), working(**busy))
        assert decision.actions == []
        entries += decision.entries
    assert [e.kind for e in entries] == [EntryKind.QUEUE_STUCK]
    stuck = entries[0]
    assert stuck.fields["TRACARDI_QUEUE"] == "celery" and stuck.fields["TRACARDI_UNIT"] == UPDATE
    assert sim.past(UPDATE).work == "stuck"
    # Emptied, then stuck again: a second report.
    sim.step(400.0, working(waiting=0))
    sim.step(410.0, working(**busy, oldest="m9"))
    assert kinds(sim.step(445.0, working(**busy, oldest="m9"))) == [EntryKind.QUEUE_STUCK]


def test_a_moving_queue_restarts_its_wait():
    """The oldest message changes each tick: work is taken, however long the queue."""
    sim = Sim(Config(work_wait=30))
    for now in range(0, 200, 10):
        decision = sim.step(float(now), working(waiting=50, oldest=f"m{now}",
                                                consuming_idle=None, broadcast=False))
        assert decision.actions == [] and decision.entries == []


def test_a_new_container_gets_its_own_wait():
    sim = Sim(Config(work_wait=30))
    hung = dict(waiting=1, consuming_idle=None, broadcast=False)
    sim.step(0.0, working(**hung, cid="a"))
    assert acts(sim.step(30.0, working(**hung, cid="a"))) == [("restart", UPDATE)]
    sim.step(35.0, replace(working(**hung), container=None))
    sim.step(40.0, working(**hung, cid="b"))  # running again: its wait starts now
    assert sim.step(69.0, working(**hung, cid="b")).actions == []
    assert acts(sim.step(70.0, working(**hung, cid="b"))) == [("restart", UPDATE)]


def test_one_hung_replica_beside_a_live_one_is_restarted_and_the_queue_not_called_stuck():
    sim = Sim(Config(work_wait=30))
    hung = working(UPDATE, waiting=2, consuming_idle=None, broadcast=False)
    live = working(UPDATE_2, waiting=2, consuming_idle=0)
    sim.step(0.0, hung, live)
    decision = sim.step(30.0, hung, live)
    assert [a for a in acts(decision) if a[0] == "restart"] == [("restart", UPDATE)]
    assert EntryKind.QUEUE_STUCK not in kinds(decision)


def test_no_verdict_without_a_reading_and_unknown_without_a_signal():
    sim = Sim()
    sim.step(0.0, replace(working(), work=None), healthy("tracardi-scheduler.service"))
    assert sim.past(UPDATE).work == ""
    assert sim.past("tracardi-scheduler.service").work == "unknown"


def test_no_verdict_while_redis_is_down():
    sim = Sim(Config(work_wait=30))
    hung = dict(waiting=1, consuming_idle=None, broadcast=False)
    sim.step(0.0, working(**hung))
    decision = sim.step(60.0, working(**hung), dependencies={"redis": False})
    assert EntryKind.NOT_LIVE not in kinds(decision)


def failing_health_check(cid: str = "id-tracardi-update") -> WorkerView:
    base = healthy(UPDATE)
    return replace(base, live=False, not_live_reason="its Celery worker does not answer a ping",
                   container=container(UPDATE, cid=cid))


def test_a_failed_health_check_restarts_a_docker_worker_once_per_container():
    sim = Sim()
    decision = sim.step(0.0, failing_health_check())
    assert acts(decision) == [("restart", UPDATE)]
    assert kinds(decision) == [EntryKind.NOT_LIVE, EntryKind.RESTART]
    assert sim.step(10.0, failing_health_check()).actions == []
    assert acts(sim.step(20.0, failing_health_check(cid="new"))) == [("restart", UPDATE)]


def test_on_podman_a_failed_health_check_is_reported_and_left_to_podmans_kill():
    """HealthOnFailure=kill: Podman kills the container and its unit restarts it; a restart
    by the agent as well would start the worker twice."""
    sim = Sim(Config(engine_kills_not_live=True))
    decision = sim.step(0.0, failing_health_check())
    assert decision.actions == []
    entry = one_event(decision, EntryKind.NOT_LIVE)
    assert "Podman kills it" in entry.message
    assert kinds(sim.step(10.0, failing_health_check())) == []  # once per container


def test_on_podman_a_worker_taking_no_work_is_restarted_unless_podman_kills_it():
    """Podman's health check (a ping) does not see a worker whose pidbox answers but takes
    no work: the work verdict restarts it. A container whose failed health check was
    reported is Podman's to kill: its work verdict restarts nothing."""
    sim = Sim(Config(work_wait=30, engine_kills_not_live=True))
    answering = working(waiting=1, consuming_idle=None, broadcast=True)
    sim.step(0.0, answering)
    assert acts(sim.step(31.0, answering)) == [("restart", UPDATE)]

    sim = Sim(Config(work_wait=30, engine_kills_not_live=True))
    hung = replace(working(waiting=1, consuming_idle=None, broadcast=False),
                   live=False, not_live_reason="its Celery worker does not answer a ping")
    assert kinds(sim.step(0.0, hung)) == [EntryKind.NOT_LIVE]
    decision = sim.step(31.0, hung)
    assert decision.actions == [] and sim.past(UPDATE).work == "not live"
