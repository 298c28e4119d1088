"""What operators are told, on a real host: the agent's metrics through Debian's own
prometheus-node-exporter (textfile collector, its default directory), Debian's Prometheus
loading the shipped alert rules and firing them, the journal catalog behind
`journalctl -x`, `tracardi-systemd events`, and the --on-failure hook.

Both daemons run inside the sandbox only, on its loopback (its network namespace has no
other interface), as transient units: the packages' own units stay masked (sandbox.py).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .operator import install, start_all, tool, uninstall_everything, write_env
from .releases import selected
from .sandbox import CHECKOUT, Sandbox
from .standin import start_fake_elasticsearch

INTERVAL = 2  # the agent's cycle
EXPORTER = "127.0.0.1:9100"
PROMETHEUS = "127.0.0.1:9090"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # Debian's default, not passed to anyone
PROM_DIR = "/var/tmp/e2e-prometheus"
SCHEDULER = "tracardi-scheduler.service"
REDIS = {"dependency": "redis", "address": "127.0.0.1:6379"}
LABEL = re.compile(r'(\w+)="([^"]*)"')
FOR_SECONDS = 60  # the `for:` of the worker-down and dependency alerts in the shipped rules

PROMETHEUS_YML = f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{PROM_DIR}/tracardi.rules.yml]
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ['{EXPORTER}']}}]
"""


def http_get(host: Sandbox, url: str) -> str:
    """Inside the sandbox (no curl in a minimal root): Python's urllib."""
    script = ("import sys, urllib.request; "
              "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")
    return host.run(f"python3 -c {shlex.quote(script)} {shlex.quote(url)}").stdout


@dataclass
class Monitored:
    host: Sandbox
    since: str  # epoch seconds: the session's journal is shared

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """node_exporter's /metrics, the tracardi_ series: (name, labels, value)."""
        found = []
        for line in http_get(self.host, f"http://{EXPORTER}/metrics").splitlines():
            if line.startswith("tracardi_"):
                series, value = line.rsplit(" ", 1)
                name, _, labels = series.partition("{")
                found.append((name, dict(LABEL.findall(labels)), float(value)))
        return found

    def values(self, name: str, **labels: str) -> list[float]:
        return [value for found, have, value in self.metrics()
                if found == name and labels.items() <= have.items()]

    def wait_for_metric(self, name: str, value: float, timeout: float = 30,
                        **labels: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            matching = self.values(name, **labels)
            if matching and all(v == value for v in matching):
                return
            if time.monotonic() > deadline:
                seen = self.host.run(f"ls -l {TEXTFILE_DIR}; journalctl -q -n 20 --since "
                                     f"@{self.since} -u tracardi-agent -u e2e-node-exporter",
                                     check=False).stdout
                pytest.fail(f"no {name}{labels} = {value} within {timeout} s: {matching}\n"
                            f"{seen}")
            time.sleep(0.5)

    def alerts(self) -> list[dict]:
        answer = json.loads(http_get(self.host, f"http://{PROMETHEUS}/api/v1/alerts"))
        return answer["data"]["alerts"]

    def wait_for_alert(self, name: str, state: str | None, timeout: float,
                       **labels: str) -> float:
        """Seconds until alert `name` with `labels` is in `state` (None: gone)."""
        started = time.monotonic()
        while True:
            states = [a["state"] for a in self.alerts() if a["labels"]["alertname"] == name
                      and all(a["labels"].get(k) == v for k, v in labels.items())]
            if (state is None and not states) or (state is not None and state in states):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                pytest.fail(f"{name} {labels} not {state or 'gone'} within {timeout} s: "
                            f"{states}")
            time.sleep(1)


def start_monitoring(host: Sandbox) -> None:
    """Debian's node exporter (its default textfile directory, only that collector: the
    others cost CPU shared with the other tests) and Prometheus, on loopback."""
    host.run(f"test -d {TEXTFILE_DIR}")  # made by Debian's package, root's, 0755
    host.run(
        "systemd-run -q --unit=e2e-node-exporter -p User=prometheus "
        f"/usr/bin/prometheus-node-exporter --web.listen-address={EXPORTER} "
        "--collector.disable-defaults --collector.textfile")
    host.run(f"rm -rf {PROM_DIR} && mkdir -p {PROM_DIR} && "
             f"cp {CHECKOUT}/monitoring/tracardi.rules.yml {PROM_DIR}/ && "
             f"cat > {PROM_DIR}/prometheus.yml", input=PROMETHEUS_YML)
    host.run(
        "systemd-run -q --unit=e2e-prometheus /usr/bin/prometheus "
        f"--config.file={PROM_DIR}/prometheus.yml --storage.tsdb.path={PROM_DIR}/data "
        f"--web.listen-address={PROMETHEUS}")
    host.wait_until(f"python3 -c 'import urllib.request; urllib.request.urlopen("
                    f"\"http://{PROMETHEUS}/-/ready\")'", timeout=60)


@pytest.fixture
def monitored(sandbox: Sandbox) -> Iterator[Monitored]:
    start_fake_elasticsearch(sandbox)
    since = sandbox.run("date +%s").stdout.strip()
    time.sleep(1)  # --since has a resolution of one second
    start_monitoring(sandbox)
    try:
        yield Monitored(sandbox, since)
    finally:
        sandbox.run("systemctl stop e2e-prometheus e2e-node-exporter; "
                    "systemctl reset-failed e2e-prometheus e2e-node-exporter; "
                    f"rm -rf {PROM_DIR} {TEXTFILE_DIR}/tracardi.prom "
                    "/etc/systemd/system/tracardi-notify@.service; systemctl daemon-reload",
                    check=False)
        uninstall_everything(sandbox)
        sandbox.run("systemctl start redis-server")


def test_metrics_alerts_catalog_and_events_follow_a_killed_worker_and_a_redis_outage(
        monitored):
    m, host = monitored, monitored.host
    write_env(host)
    install(host, f"--agent-interval {INTERVAL}")
    start_all(host)

    # Through node_exporter: every worker up, Redis reachable, the agent alive.
    m.wait_for_metric("tracardi_worker_up", 1, unit=SCHEDULER)
    m.wait_for_metric("tracardi_worker_container_running", 1)
    m.wait_for_metric("tracardi_dependency_reachable", 1, **REDIS)
    assert m.values("tracardi_upgrade_in_flight") == [0]
    assert 0 < m.values("tracardi_agent_cycle_duration_seconds")[0] < INTERVAL
    assert abs(m.values("tracardi_agent_last_cycle_timestamp_seconds")[0] - time.time()) < 120
    assert "\nnode_textfile_scrape_error 0\n" in http_get(host, f"http://{EXPORTER}/metrics")
    restarts = "tracardi_worker_systemd_restarts_total"
    scheduler = {"unit": SCHEDULER, "worker": "scheduler", "release": "0.8.1"}
    assert m.values(restarts, **scheduler) == [0]

    # The update worker's queue as the agent reads it from Redis (the stand-in takes nothing:
    # emptied again before the agent's work wait could judge it).
    celery = {"redis": "127.0.0.1:6379", "queue": "celery"}
    m.wait_for_metric("tracardi_queue_messages", 0, **celery)
    host.run("redis-cli LPUSH celery task-1 task-2 >/dev/null")
    m.wait_for_metric("tracardi_queue_messages", 2, **celery)
    host.run("redis-cli DEL celery >/dev/null")
    m.wait_for_metric("tracardi_queue_messages", 0, **celery)
    assert m.values("tracardi_queue_stuck", **celery) == [0]

    # A killed worker: systemd restarts it, and the series say so.
    host.run("docker kill tracardi-scheduler >/dev/null")
    m.wait_for_metric(restarts, 1, **scheduler)
    m.wait_for_metric("tracardi_worker_container_running", 1, unit=SCHEDULER)
    events = tool(host, f"events --since @{m.since} --unit scheduler").stdout
    assert "container_died" in events and "container tracardi-scheduler died" in events

    # A Redis outage and a stopped worker: both alerts fire after their `for:`, no sooner.
    host.run("systemctl stop redis-server")
    host.run(f"systemctl stop {SCHEDULER}")
    broken = time.monotonic()
    m.wait_for_metric("tracardi_dependency_reachable", 0, **REDIS)
    m.wait_for_metric("tracardi_worker_up", 0, unit=SCHEDULER)
    m.wait_for_alert("TracardiDependencyUnreachable", "pending", 30, dependency="redis")
    m.wait_for_alert("TracardiDependencyUnreachable", "firing", FOR_SECONDS + 30,
                     dependency="redis")
    m.wait_for_alert("TracardiWorkerDown", "firing", 30, unit=SCHEDULER)
    assert time.monotonic() - broken >= FOR_SECONDS
    firing = [a for a in m.alerts() if a["state"] == "firing"]
    assert {a["labels"]["alertname"] for a in firing} == {
        "TracardiDependencyUnreachable", "TracardiWorkerDown"}
    assert all("journalctl" in a["annotations"]["runbook"] for a in firing)

    # journalctl -x explains the agent's entry from the catalog install put in place.
    explained = host.run("journalctl --no-pager -x -u tracardi-agent "
                         "MESSAGE_ID=85e36341d38641cdbc17c83ffbd22666 -n 1").stdout
    assert "redis 127.0.0.1:6379 is unreachable: restarts are held" in explained
    assert "What to do: bring it back or fix the address" in explained
    events = tool(host, f"events --since @{m.since}").stdout.splitlines()
    assert any("unreachable" in line and "redis 127.0.0.1:6379" in line for line in events)

    # The repair clears both.
    host.run("systemctl start redis-server")
    host.run(f"systemctl start {SCHEDULER}")
    m.wait_for_metric("tracardi_dependency_reachable", 1, **REDIS)
    m.wait_for_alert("TracardiDependencyUnreachable", None, 30)
    m.wait_for_alert("TracardiWorkerDown", None, 30)


def test_on_failure_starts_the_hook_when_systemd_gives_up_and_the_series_say_so(monitored):
    m, host = monitored, monitored.host
    host.run(f"cp {CHECKOUT}/examples/tracardi-notify@.service /etc/systemd/system/")
    write_env(host, STANDIN_FAIL_SCHEDULER="1")
    install(host, f"--agent-interval {INTERVAL} --worker scheduler "
                  "--on-failure tracardi-notify@.service")
    host.run("systemctl start tracardi.target")

    # The crash loop outlasts systemd's start limit: OnFailure= runs the example hook, and
    # the agent, seeing systemd give up, starts it once more itself, before its first
    # re-arm (10 s of backoff later) brings a second round of failures. On systemd 252
    # OnFailure= runs once when systemd gives up; from 254 at every failed start too, so
    # only 252 tells the agent's run apart by counting (the fast tests prove the call).
    rearm = f"-u tracardi-agent MESSAGE_ID=80ea54c2b8564472b3df81f86f386bc0 --since @{m.since}"
    host.wait_until(f"journalctl -q {rearm} | grep -q .", timeout=120)
    first_rearm = json.loads(host.run(f"journalctl -o json -n 1 -r {rearm}").stdout)
    hooks = [json.loads(line) for line in host.run(
        f"journalctl -o json -t tracardi-notify --since @{m.since}").stdout.splitlines()]
    before = [h["MESSAGE"] for h in hooks
              if int(h["__REALTIME_TIMESTAMP"]) < int(first_rearm["__REALTIME_TIMESTAMP"])]
    message = (f"{SCHEDULER} failed (exit-code): see journalctl -u {SCHEDULER} -n 50 and "
               f"tracardi-systemd events --unit {SCHEDULER}")
    assert before and set(before) == {message}, hooks
    if selected().systemd < 254:
        assert len(before) == 2, hooks  # systemd's and the agent's
    failed = host.run(f"journalctl -q --since @{m.since} -u tracardi-agent "
                      "TRACARDI_ACTION=on-failure-failed", check=False).stdout
    assert failed == ""

    # The series: systemd gave up, the agent re-armed it, the unit is down meanwhile.
    m.wait_for_metric("tracardi_worker_gave_up_total", 1, timeout=30, unit=SCHEDULER)
    m.wait_for_metric("tracardi_worker_backoff_attempts", 1, timeout=30, unit=SCHEDULER)
