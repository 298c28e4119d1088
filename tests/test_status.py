"""`status`: rows from (fake) systemctl and docker and the agent's state file; the verdict."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeEngine, FakeSystemctl, inspected, unit_props

from tracardi_systemd.cli.table import format_table
from tracardi_systemd.install.manifest import Manifest
from tracardi_systemd.names import AGENT_UNIT, TARGET
from tracardi_systemd.observe.status import Status, WorkerRow, collect
from tracardi_systemd.spec.catalog import workers_for

FIVE = [f"tracardi-{w.name}.service" for w in workers_for("0.8.1")]
SCHEDULER = "tracardi-scheduler.service"
TRIGGER = "tracardi-trigger.service"


def thirty_minutes_ago() -> str:
    return (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def manifest(units: list[str]) -> Manifest:
    return Manifest(unit_dir="/etc/systemd/system", env_file="/etc/tracardi/.env-docker",
                    tracardi_version="0.8.1", units=[TARGET, AGENT_UNIT, *units])


class Host:
    """A healthy host by default; tests break it where they need."""

    def __init__(self, tmp_path, units: list[str] = FIVE):
        self.units = units
        self.systemctl = FakeSystemctl({u: unit_props(restarts=i) for i, u in enumerate(units)}
                                       | {AGENT_UNIT: unit_props()})
        self.engine = FakeEngine([inspected(u, pid=os.getpid(), started_at=thirty_minutes_ago())
                                  for u in units])
        self.state_file = tmp_path / "agent-state.json"

    def collect(self) -> Status:
        return collect(manifest(self.units), self.systemctl, self.engine, self.state_file)

    def drop_container(self, unit: str) -> None:
        self.engine.entries = [c for c in self.engine.entries
                                  if c["Config"]["Labels"]["tracardi.unit"] != unit]


def row(status: Status, unit: str) -> WorkerRow:
    return next(w for w in status.workers if w.unit == unit)


def test_healthy_host(tmp_path):
    host = Host(tmp_path)
    status = host.collect()
    assert status.healthy
    assert [w.unit for w in status.workers] == FIVE  # the target and the agent are no rows
    assert status.agent == "active/running"
    assert len(host.systemctl.shows) == 1
    assert host.systemctl.shows[0][0] == [*FIVE, AGENT_UNIT]
    assert len(host.engine.listings) == 1
    scheduler = row(status, SCHEDULER)
    assert scheduler.unit_state == "active/running"
    assert scheduler.container == "running"
    assert scheduler.image == "tracardi/scheduler:0.8.1"
    assert scheduler.restarts == FIVE.index(SCHEDULER)
    assert scheduler.memory_bytes is not None and scheduler.memory_bytes > 0
    assert 29 * 60 <= scheduler.uptime_seconds <= 31 * 60
    table = format_table(status)
    assert table.splitlines()[-1] == "healthy"
    assert "NOT healthy" not in table
    assert "30m" in table


def test_missing_container_makes_it_unhealthy(tmp_path):
    host = Host(tmp_path)
    host.drop_container(SCHEDULER)
    status = host.collect()
    assert not status.healthy
    scheduler = row(status, SCHEDULER)
    assert (scheduler.container, scheduler.memory_bytes, scheduler.image,
            scheduler.uptime_seconds) == ("missing", None, "", None)
    assert not scheduler.healthy
    assert row(status, TRIGGER).healthy
    table = format_table(status)
    assert table.splitlines()[-1] == "NOT healthy"
    line = next(x for x in table.splitlines() if x.startswith(SCHEDULER))
    assert "missing" in line
    # no memory, no agent state, no agent restarts, no reason; what is wrong
    assert line.split()[-6:] == ["-", "-", "0", "-", "container", "missing"]
    assert scheduler.problems == ["container missing"]


@pytest.mark.parametrize(("unit_state", "container_status"), [
    (("failed", "failed"), None),
    (("activating", "auto-restart"), None),
    (("inactive", "dead"), None),
    (("active", "running"), "exited"),
    (("active", "running"), "created"),
])
def test_any_worker_not_running_makes_it_unhealthy(tmp_path, unit_state, container_status):
    host = Host(tmp_path)
    host.systemctl.units[SCHEDULER] = unit_props(*unit_state)
    if container_status is None:
        host.drop_container(SCHEDULER)
    else:
        host.drop_container(SCHEDULER)
        host.engine.entries.append(inspected(SCHEDULER, status=container_status))
    status = host.collect()
    assert not status.healthy
    assert [w.unit for w in status.workers if not w.healthy] == [SCHEDULER]
    assert row(status, SCHEDULER).unit_state == "/".join(unit_state)
    if container_status:
        assert row(status, SCHEDULER).container == container_status
        assert row(status, SCHEDULER).memory_bytes is None  # no process to measure
    assert "NOT healthy" in format_table(status)


@pytest.mark.parametrize("agent", [("inactive", "dead"), ("failed", "failed"),
                                   ("activating", "start")])
def test_agent_not_running_makes_it_unhealthy(tmp_path, agent):
    host = Host(tmp_path)
    host.systemctl.units[AGENT_UNIT] = unit_props(*agent)
    status = host.collect()
    assert all(w.healthy for w in status.workers)
    assert status.agent == "/".join(agent)
    assert not status.healthy
    assert f"agent: tracardi-agent.service {'/'.join(agent)}" in format_table(status)
    assert format_table(status).endswith("NOT healthy")


def test_agent_not_installed_makes_it_unhealthy(tmp_path):
    host = Host(tmp_path)
    del host.systemctl.units[AGENT_UNIT]
    status = host.collect()
    assert status.agent == "inactive/dead"
    assert not status.healthy


def test_agent_state_file_values_appear(tmp_path):
    host = Host(tmp_path)
    host.state_file.write_text(json.dumps({
        "summary": "4/5 workers running",
        "workers": {SCHEDULER: {"state": "backoff", "restarts": 3,
                                "last_reason": "start-limit-hit"}},
    }))
    status = host.collect()
    scheduler = row(status, SCHEDULER)
    assert (scheduler.agent_state, scheduler.last_reason) == ("backoff", "start-limit-hit")
    assert (row(status, TRIGGER).agent_state, row(status, TRIGGER).last_reason) == ("", "")
    line = next(x for x in format_table(status).splitlines() if x.startswith(SCHEDULER))
    assert "backoff" in line
    shown = json.loads(status.to_json())
    assert shown["workers"][FIVE.index(SCHEDULER)]["last_reason"] == "start-limit-hit"


def test_agent_restart_count_appears(tmp_path):
    host = Host(tmp_path)
    host.state_file.write_text(json.dumps({"workers": {SCHEDULER: {
        "state": "restarting", "restarts": 7, "last_reason": "container missing"}}}))
    shown = json.loads(host.collect().to_json())
    scheduler = shown["workers"][FIVE.index(SCHEDULER)]
    assert scheduler["agent_restarts"] == 7
    assert scheduler["last_reason"] == "container missing"


@pytest.mark.parametrize("content", [
    "", "not json", "[1, 2]", '{"summary": "x"}',
    '{"workers": 3}', '{"workers": {"tracardi-scheduler.service": 3}}',
])
def test_unreadable_agent_state_file_is_ignored(tmp_path, content):
    host = Host(tmp_path)
    host.state_file.write_text(content)
    status = host.collect()
    assert status.healthy
    assert all(w.agent_state == "" for w in status.workers)


def test_to_json_round_trips(tmp_path):
    host = Host(tmp_path)
    host.drop_container(TRIGGER)
    host.state_file.write_text(json.dumps({"workers": {TRIGGER: {
        "state": "starting", "restarts": 0, "last_reason": ""}}}))
    status = host.collect()
    data = json.loads(status.to_json())
    assert data["healthy"] is False
    assert data["agent"] == "active/running"
    rows = []
    for entry in data["workers"]:
        healthy = entry.pop("healthy")
        problems = entry.pop("problems")
        rebuilt = WorkerRow(**entry)
        assert rebuilt.problems == problems
        assert healthy == rebuilt.healthy
        rows.append(rebuilt)
    assert Status(rows, data["agent"]) == status
    assert [asdict(r) for r in rows] == [asdict(w) for w in status.workers]
    assert row(status, TRIGGER).agent_state == "starting"


def test_a_running_worker_is_unhealthy_when_its_dependency_or_liveness_fails(tmp_path):
    host = Host(tmp_path)
    redis = "redis 10.0.0.7:6379"
    host.state_file.write_text(json.dumps({"workers": {
        SCHEDULER: {"state": "running", "dependencies": {redis: False, "elasticsearch": True}},
        TRIGGER: {"state": "running", "dependencies": {redis: True}}}}))
    update = "tracardi-update.service"
    host.engine.entries = [
        c if c["Config"]["Labels"]["tracardi.unit"] != update
        else {**c, "State": {**c["State"], "Health": {"Status": "unhealthy"}}}
        for c in host.engine.entries]
    status = host.collect()
    assert row(status, SCHEDULER).problems == [f"{redis} unreachable"]
    assert row(status, TRIGGER).healthy
    assert row(status, update).liveness == "unhealthy"
    assert row(status, update).problems == ["liveness check failing"]
    data = json.loads(status.to_json())
    scheduler = next(w for w in data["workers"] if w["unit"] == SCHEDULER)
    assert scheduler["dependencies"] == {redis: False, "elasticsearch": True}
    assert scheduler["healthy"] is False
    assert "liveness check failing" in format_table(status)


def test_work_based_liveness_shows_per_worker_and_a_verdict_counts_as_a_problem(tmp_path):
    host = Host(tmp_path)
    update = "tracardi-update.service"
    host.state_file.write_text(json.dumps({"workers": {
        update: {"state": "restarting", "work": "not live"},
        SCHEDULER: {"state": "running", "work": "unknown"},
        TRIGGER: {"state": "running", "work": "stuck"}}}))
    status = host.collect()
    assert row(status, update).problems == ["not taking work"]
    assert row(status, SCHEDULER).work == "unknown" and row(status, SCHEDULER).healthy
    assert row(status, TRIGGER).problems == ["queue stuck: work waits while it looks live"]
    assert row(status, "tracardi-segmentation.service").work == "-"
    table = format_table(status).splitlines()
    assert table[0].split()[3:5] == ["LIVENESS", "WORK"]
    assert next(x for x in table if x.startswith(SCHEDULER)).split()[4] == "unknown"
    data = json.loads(status.to_json())
    assert next(w for w in data["workers"] if w["unit"] == update)["work"] == "not live"
