"""`status` of units that run no long-running worker: the run-once init, the jobs' timers."""

from __future__ import annotations

import json

from fakes import unit_props
from test_status import Host

from tracardi_systemd.cli.table import format_table
from tracardi_systemd.names import AGENT_UNIT, INIT_UNIT

ROLE = "tracardi-background-function.service"
TIMER = "tracardi-metrics-job.timer"


def host_with(tmp_path, init: dict, timer: dict) -> Host:
    host = Host(tmp_path, units=[ROLE])
    host.units = [INIT_UNIT, ROLE, TIMER]  # the manifest's order: catalog order
    host.systemctl.units |= {INIT_UNIT: init, TIMER: timer}
    return host


def test_init_exited_and_a_waiting_timer_are_healthy_and_shown(tmp_path):
    host = host_with(tmp_path, unit_props(sub="exited"), unit_props(sub="waiting"))
    status = host.collect()
    assert status.healthy
    assert [w.unit for w in status.workers] == [ROLE]  # no worker row for init or a timer
    assert host.systemctl.shows[0][0] == [ROLE, INIT_UNIT, TIMER, AGENT_UNIT]  # one call
    table = format_table(status)
    assert f"{INIT_UNIT} active/exited (last run: success)\n" in table
    assert f"{TIMER} active/waiting (last run: success)\n" in table


def test_a_failed_init_makes_the_host_unhealthy_and_says_so(tmp_path):
    failed = unit_props(active="failed", sub="failed", result="exit-code")
    host = host_with(tmp_path, failed, unit_props(sub="waiting"))
    status = host.collect()
    assert not status.healthy
    assert f"{INIT_UNIT} failed/failed (last run: exit-code) NOT healthy\n" in format_table(status)
    data = json.loads(status.to_json())
    assert data["others"][0] == {"unit": INIT_UNIT, "state": "failed/failed",
                                 "result": "exit-code", "healthy": False}
