"""The agent's Prometheus metrics (node_exporter's textfile collector) and its failure hook,
on the loop of test_agent_loop with fake systemctl and docker; `promtool check metrics`
(Debian's prometheus package, installed by scripts/test) judges the file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fakes import FakeSystemctl, inspected, unit_props
from test_agent_loop import FIVE, REDIS, SCHEDULER, UPDATE, Rig, quiet_host  # noqa: F401

from tracardi_systemd.agent.metrics import (
    DOCKER_LABELS,
    MetricsFile,
    label_text,
)
from tracardi_systemd.agent.on_failure import FailureHook
from tracardi_systemd.agent.policy import Config
from tracardi_systemd.host.commands import CommandError
from tracardi_systemd.names import METRICS_FILE
from tracardi_systemd.observe.model import QueueReading, WorkReading

MIB = 2**20


class RefusingSystemctl(FakeSystemctl):
    def __call__(self, *args: str) -> str:
        raise CommandError("Unit notify.service not found.")


def with_metrics(rig: Rig, tmp_path: Path, heartbeat: float = 60.0) -> MetricsFile:
    directory = tmp_path / "textfile"
    directory.mkdir(exist_ok=True)
    metrics = MetricsFile(directory, heartbeat, clock=rig.clock)
    rig.agent.after_cycle.append(metrics.after_cycle)
    return metrics


def samples(path: Path) -> dict[str, float]:
    """{'name{labels}': value} of an exposition file."""
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


def series(name: str, unit: str, **extra: str) -> str:
    worker = unit.removeprefix("tracardi-").removesuffix(".service")
    return name + label_text(unit=unit, worker=worker, release="0.8.1", **extra)


def test_a_cycle_writes_every_worker_dependency_and_agent_series(tmp_path):
    rig = Rig(tmp_path, FIVE)
    metrics = with_metrics(rig, tmp_path)
    rig.agent.cycle()

    found = samples(metrics.path)
    for unit in FIVE:
        assert found[series("tracardi_worker_up", unit)] == 1
        assert found[series("tracardi_worker_container_running", unit)] == 1
        assert found[series("tracardi_worker_memory_bytes", unit)] == 64 * MIB
        assert found[series("tracardi_worker_memory_limit_bytes", unit)] == 2048 * MIB
        assert found[series("tracardi_worker_backoff", unit)] == 0
        assert found[series("tracardi_worker_systemd_restarts_total", unit)] == 0
        assert found[series("tracardi_worker_gave_up_total", unit)] == 0
        # no liveness verdict from Docker yet: absent, not 0
        assert series("tracardi_worker_live", unit) not in found
    redis = label_text(dependency="redis", address="127.0.0.1:6379")
    elastic = label_text(dependency="elasticsearch", address="10.0.0.5:9200")
    assert found["tracardi_dependency_reachable" + redis] == 1
    assert found["tracardi_dependency_reachable" + elastic] == 1
    assert found["tracardi_dependency_reachable" + DOCKER_LABELS] == 1
    assert found["tracardi_upgrade_in_flight"] == 0
    assert found["tracardi_agent_heartbeat_seconds"] == 60
    assert found["tracardi_agent_last_cycle_timestamp_seconds"] > 1.7e9
    assert 0 <= found["tracardi_agent_cycle_duration_seconds"] < 5
    assert oct(metrics.path.stat().st_mode & 0o777) == "0o644"  # node_exporter's user reads it
    assert [p.name for p in metrics.path.parent.iterdir()] == [METRICS_FILE]


def test_promtool_accepts_the_file_as_prometheus_conventions_want_it(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/test installs Debian's prometheus package"
    states = {u: unit_props() for u in FIVE}
    states[SCHEDULER] = unit_props("failed", "failed", "start-limit-hit", restarts=5)
    rig = Rig(tmp_path, FIVE, unit_state=states,
              containers=[inspected(u, pid=10) for u in FIVE if u != SCHEDULER])
    metrics = with_metrics(rig, tmp_path)
    rig.work[UPDATE] = WorkReading("127.0.0.1:6379", {"celery": QueueReading(3, "m1")},
                                   0, True, 4)
    rig.agent.cycle()
    rig.clock.advance(13)
    rig.agent.cycle()  # the re-arm: a counter with a reason label
    text = metrics.path.read_bytes()
    assert b"tracardi_queue_oldest_wait_seconds{" in text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             timeout=60)
    assert checked.returncode == 0 and checked.stdout == checked.stderr == b"", checked


def test_a_missing_container_a_redis_outage_and_a_give_up_move_the_series(tmp_path):
    states = {u: unit_props() for u in FIVE}
    rig = Rig(tmp_path, FIVE, unit_state=states)
    metrics = with_metrics(rig, tmp_path)
    rig.agent.cycle()

    rig.dependencies[REDIS] = False
    rig.engine.entries = [e for e in rig.engine.entries
                          if e["Config"]["Labels"]["tracardi.unit"] != SCHEDULER]
    rig.clock.advance(5)
    rig.agent.cycle()
    found = samples(metrics.path)
    assert found["tracardi_dependency_reachable"
                 + label_text(dependency="redis", address="127.0.0.1:6379")] == 0
    assert found[series("tracardi_worker_container_running", SCHEDULER)] == 0
    assert series("tracardi_worker_memory_bytes", SCHEDULER) not in found

    rig.dependencies[REDIS] = True
    rig.clock.advance(20)  # past the grace: the agent restarts the unit
    rig.agent.cycle()
    found = samples(metrics.path)
    assert found[series("tracardi_worker_agent_restarts_total", SCHEDULER,
                        reason="container missing")] == 1

    # The container the agent's restart brought is not systemd's restart ...
    rig.engine.entries.append(inspected(SCHEDULER, pid=11, cid="second"))
    rig.clock.advance(2)
    rig.agent.cycle()
    assert samples(metrics.path)[series("tracardi_worker_systemd_restarts_total",
                                        SCHEDULER)] == 0
    # ... but one that replaces it while the agent did nothing is (Restart=always).
    replace_container(rig, SCHEDULER, "third")
    rig.clock.advance(2)
    rig.agent.cycle()
    assert samples(metrics.path)[series("tracardi_worker_systemd_restarts_total",
                                        SCHEDULER)] == 1

    rig.systemctl.units[SCHEDULER] = unit_props("failed", "failed", "start-limit-hit")
    replace_container(rig, SCHEDULER, None)
    rig.clock.advance(5)
    rig.agent.cycle()
    found = samples(metrics.path)
    assert found[series("tracardi_worker_backoff", SCHEDULER)] == 1
    assert found[series("tracardi_worker_gave_up_total", SCHEDULER)] == 1
    assert found[series("tracardi_worker_up", SCHEDULER)] == 0


def replace_container(rig: Rig, unit: str, cid: str | None) -> None:
    rig.engine.entries = [e for e in rig.engine.entries
                          if e["Config"]["Labels"]["tracardi.unit"] != unit]
    if cid:
        rig.engine.entries.append(inspected(unit, pid=12, cid=cid))


def test_a_queue_whose_work_waits_on_live_consumers_is_stuck_until_it_moves(tmp_path):
    rig = Rig(tmp_path, FIVE, config=Config(work_wait=30))
    metrics = with_metrics(rig, tmp_path)
    celery = label_text(redis="127.0.0.1:6379", queue="celery")

    def tick(seconds: float, waiting: int, oldest: str) -> dict[str, float]:
        # A busy consumer: blocked in BRPOP, so live however long the work waits.
        rig.work[UPDATE] = WorkReading("127.0.0.1:6379", {"celery": QueueReading(waiting, oldest)},
                                       0, True, 4)
        rig.clock.advance(seconds)
        rig.agent.cycle()
        return samples(metrics.path)

    found = tick(0, 0, "")
    assert (found["tracardi_queue_messages" + celery],
            found["tracardi_queue_oldest_wait_seconds" + celery],
            found["tracardi_queue_stuck" + celery]) == (0, 0, 0)
    tick(10, 7, "m1")
    found = tick(20, 7, "m1")
    assert found["tracardi_queue_messages" + celery] == 7
    assert found["tracardi_queue_oldest_wait_seconds" + celery] == 20
    assert found["tracardi_queue_stuck" + celery] == 0
    found = tick(10, 7, "m1")
    assert found["tracardi_queue_oldest_wait_seconds" + celery] == 30
    assert found["tracardi_queue_stuck" + celery] == 1
    found = tick(5, 6, "m2")  # one was taken: its next message waits from now
    assert found["tracardi_queue_oldest_wait_seconds" + celery] == 0
    assert found["tracardi_queue_stuck" + celery] == 0
    assert re.search(r"^tracardi_queue_\w+\{.*unit=", metrics.path.read_text(), re.M) is None


def test_a_liveness_verdict_is_1_or_0(tmp_path):
    containers = [inspected(u, pid=10) for u in FIVE]
    for entry, health in zip(containers[:2], ("healthy", "unhealthy"), strict=True):
        entry["State"]["Health"] = {"Status": health}
    rig = Rig(tmp_path, FIVE, containers=containers)
    metrics = with_metrics(rig, tmp_path)
    rig.agent.cycle()
    found = samples(metrics.path)
    assert found[series("tracardi_worker_live", FIVE[0])] == 1
    assert found[series("tracardi_worker_live", FIVE[1])] == 0


def test_an_unchanged_cycle_writes_nothing_until_the_heartbeat(tmp_path):
    rig = Rig(tmp_path, FIVE)
    metrics = with_metrics(rig, tmp_path, heartbeat=60)
    rig.agent.cycle()
    first = metrics.path.stat().st_ino
    rig.clock.advance(10)
    rig.agent.cycle()
    assert metrics.path.stat().st_ino == first  # not replaced
    rig.clock.advance(51)
    rig.agent.cycle()
    assert metrics.path.stat().st_ino != first


def test_without_the_directory_nothing_is_written_and_it_is_said_once(tmp_path):
    rig = Rig(tmp_path, FIVE)
    metrics = MetricsFile(tmp_path / "absent", 60, clock=rig.clock)
    rig.agent.after_cycle.append(metrics.after_cycle)
    for _ in range(3):
        rig.agent.cycle()
        rig.clock.advance(70)
    said = rig.stderr.getvalue()
    assert said.count("does not exist: no Prometheus metrics") == 1, said
    assert not (tmp_path / "absent").exists()

    (tmp_path / "absent").mkdir()
    rig.agent.cycle()
    assert (tmp_path / "absent" / METRICS_FILE).is_file()


def test_an_unwritable_directory_is_said_once_and_supervising_goes_on(tmp_path):
    rig = Rig(tmp_path, FIVE)
    metrics = with_metrics(rig, tmp_path)
    metrics.path.mkdir()  # a directory where the file goes: every rename fails
    for _ in range(3):
        rig.agent.cycle()
        rig.clock.advance(70)
    assert rig.stderr.getvalue().count(f"{metrics.path} not written") == 1


def test_upgrade_in_flight_is_the_manifest_record_of_a_live_upgrade(tmp_path):
    from dataclasses import replace

    from tracardi_systemd.install.inflight import UpgradeInFlight

    rig = Rig(tmp_path, FIVE)
    metrics = with_metrics(rig, tmp_path)
    rig.agent.cycle()
    assert samples(metrics.path)["tracardi_upgrade_in_flight"] == 0
    record = UpgradeInFlight.here("0.8.1", "0.8.2", {})  # this process: alive
    rig.manifest_file.write_text(replace(rig.manifest, upgrade=record.to_dict()).to_json())
    rig.clock.advance(15)
    rig.agent.cycle()
    assert samples(metrics.path)["tracardi_upgrade_in_flight"] == 1


def test_label_values_are_escaped():
    assert label_text(a='x"y\\z\nw') == '{a="x\\"y\\\\z\\nw"}'


def test_the_failure_hook_starts_the_template_instance_when_systemd_gave_up(tmp_path):
    states = {u: unit_props() for u in FIVE}
    states[SCHEDULER] = unit_props("failed", "failed", "start-limit-hit")
    rig = Rig(tmp_path, FIVE, unit_state=states,
              containers=[inspected(u, pid=10) for u in FIVE if u != SCHEDULER])
    rig.agent.after_cycle.append(FailureHook("notify@.service").after_cycle)
    rig.agent.cycle()
    assert rig.systemctl.calls == [("start", "--no-block", f"notify@{SCHEDULER}.service")]
    rig.clock.advance(5)
    rig.agent.cycle()  # still in backoff: not started again
    assert len(rig.systemctl.calls) == 1


def test_a_failing_hook_is_reported_and_supervising_goes_on(tmp_path):
    states = {u: unit_props() for u in FIVE}
    states[SCHEDULER] = unit_props("failed", "failed", "start-limit-hit")
    rig = Rig(tmp_path, FIVE, unit_state=states,
              containers=[inspected(u, pid=10) for u in FIVE if u != SCHEDULER])
    rig.agent.systemctl = RefusingSystemctl(rig.systemctl.units)
    rig.agent.after_cycle.append(FailureHook("notify.service").after_cycle)
    rig.agent.cycle()
    assert re.search(r"<3>starting the failure hook notify.service failed: Unit notify.service "
                     "not found", rig.stderr.getvalue())


@pytest.mark.parametrize("hook, failed, expected", [
    ("notify.service", "tracardi-x.service", "notify.service"),
    ("notify@.service", "tracardi-x@2.service", "notify@tracardi-x@2.service.service"),
    ("page@oncall.target", "tracardi-x.service", "page@oncall.target"),
])
def test_the_agent_starts_what_on_failure_would(hook, failed, expected):
    from tracardi_systemd.names import on_failure_unit
    assert on_failure_unit(hook, failed) == expected
