"""The upgrade gate: one restarted worker judged from looks at its unit and container."""

from __future__ import annotations

import pytest

from tracardi_systemd.observe.model import ContainerState, UnitState
from tracardi_systemd.spec.catalog import CELERY_PING
from tracardi_systemd.upgrade.gate import Gate, GateTimes, Target, seconds

UNIT = "tracardi-update.service"
NEW = "tracardi/update-worker:0.8.2"
TIMES = GateTimes(window=10, start_timeout=30)


def unit(active: str = "active", sub: str = "running", restarts: int = 0,
         result: str = "success") -> UnitState:
    return UnitState(UNIT, active, sub, result, restarts, 1)


def container(cid: str = "c1", status: str = "running", image: str = NEW,
              health: str = "") -> ContainerState:
    return ContainerState(cid, "tracardi-update", UNIT, "update", status, 42, "", image, health)


def gate(liveness=None, times: GateTimes = TIMES) -> Gate:
    return Gate(Target(UNIT, NEW, liveness), times, started=100.0, restarts=2)


def test_passes_once_one_container_of_the_new_image_ran_for_the_window():
    g = gate()
    g.see(unit(restarts=2), None, 100.5)  # docker run not there yet
    g.see(unit(restarts=2), container(), 101)
    g.see(unit(restarts=2), container(), 110.9)
    assert g.verdict is None
    g.see(unit(restarts=2), container(), 111)
    assert g.verdict.passed


@pytest.mark.parametrize(("look", "reason"), [
    ((unit(restarts=3), container()), "crash-looping: systemd restarted it 1 time(s)"),
    ((unit(restarts=2), container(cid="c2")), "crash-looping: its container exited and was"),
    ((unit(restarts=2), None), "its container stopped running after 4.0 s"),
    ((unit(restarts=2), container(status="exited")), "its container stopped running"),
    ((unit("failed", "failed", 2, "exit-code"), container()), "unit is failed (exit-code)"),
    ((unit("inactive", "dead", 2, ""), None), "unit is inactive (stopped)"),
])
def test_fails_as_soon_as_it_exits_restarts_or_is_replaced(look, reason):
    g = gate()
    g.see(unit(restarts=2), container(), 101)
    g.see(*look, 105)
    assert g.verdict is not None and not g.verdict.passed
    assert reason in g.verdict.reason


def test_a_container_of_another_image_does_not_count_and_fails_at_the_start_timeout():
    g = gate()
    old = container(image="tracardi/update-worker:0.8.1")
    g.see(unit(restarts=2), old, 120)
    assert g.verdict is None
    g.see(unit(restarts=2), old, 130.5)
    assert not g.verdict.passed
    assert "not running 30 s after its restart" in g.verdict.reason
    assert "tracardi/update-worker:0.8.1" in g.verdict.reason


def test_liveness_docker_verdict_is_taken_when_there_is_one():
    healthy, unhealthy = gate(CELERY_PING), gate(CELERY_PING)
    for g, health in ((healthy, "healthy"), (unhealthy, "unhealthy")):
        g.see(unit(restarts=2), container(health="starting"), 101)
        g.see(unit(restarts=2), container(health=health), 112)
    assert healthy.verdict.passed
    assert not unhealthy.verdict.passed
    assert CELERY_PING.why in unhealthy.verdict.reason


def test_liveness_without_a_verdict_waits_for_the_probe_until_its_deadline():
    g = gate(CELERY_PING, GateTimes(window=10, start_timeout=30, liveness_timeout=5))
    g.see(unit(restarts=2), container(health="starting"), 101)
    g.see(unit(restarts=2), container(health="starting"), 112)
    assert g.waits_for_liveness
    g.probed(False, 114)
    assert g.verdict is None
    g.probed(False, 117)
    assert not g.verdict.passed
    assert "liveness check did not pass within 5.0 s" in g.verdict.reason


def test_liveness_probe_that_passes_passes_the_gate_and_default_wait_is_the_start_period():
    g = gate(CELERY_PING)
    g.see(unit(restarts=2), container(), 101)
    g.see(unit(restarts=2), container(), 112)
    assert g.liveness_deadline == 112 + seconds(CELERY_PING.start_period)
    g.probed(True, 113)
    assert g.verdict.passed


def test_a_crash_while_waiting_for_liveness_fails_the_gate():
    g = gate(CELERY_PING)
    g.see(unit(restarts=2), container(), 101)
    g.see(unit(restarts=2), container(), 112)
    g.see(unit(restarts=3), container(), 113)
    assert not g.verdict.passed and "crash-looping" in g.verdict.reason


@pytest.mark.parametrize(("text", "value"), [("90", 90), ("60s", 60), ("2m", 120),
                                             ("1h", 3600), ("500ms", 0.5)])
def test_durations(text, value):
    assert seconds(text) == value


def test_a_duration_that_is_not_one_is_refused():
    with pytest.raises(ValueError, match="not a duration"):
        seconds("soon")
