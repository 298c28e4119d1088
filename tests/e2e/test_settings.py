"""Settings as Tracardi reads them, on a real host: the documentation's placeholder lines
are refused with nothing changed, Helm's way of writing Elasticsearch is installed and
probed, a long agent interval gets a watchdog to match."""

from __future__ import annotations

import json
import time

import pytest

from .operator import (
    ENV_SOURCE,
    INSTALLED_ENV,
    TOOL,
    install,
    start_all,
    tool,
    uninstall_everything,
    write_env,
)

UNREACHABLE = "85e36341d38641cdbc17c83ffbd22666"


@pytest.fixture
def host(sandbox):
    since = sandbox.run("date +%s").stdout.strip()
    time.sleep(1)  # --since has a resolution of one second
    sandbox.since = since
    yield sandbox
    uninstall_everything(sandbox)
    sandbox.run("systemctl stop fake-elasticsearch 2>/dev/null; true")


def fingerprint(host) -> str:
    return host.run(f"sha256sum {INSTALLED_ENV} /etc/systemd/system/tracardi*.service "
                    "/etc/systemd/system/tracardi.target "
                    "/var/lib/tracardi-systemd/manifest.json").stdout


def test_the_docs_placeholder_lines_are_refused_and_nothing_changes(host):
    write_env(host)
    install(host)
    before = fingerprint(host)
    write_env(host, REDIS_HOST="redis://<redis-ip>:6379",
              ELASTIC_HOST="http://<elastic-ip>:9200")
    result = install(host, check=False)
    assert result.returncode == 1
    assert f"{ENV_SOURCE}:4: error: REDIS_HOST still holds the placeholder" in result.stderr
    assert fingerprint(host) == before


def test_helm_style_elasticsearch_is_installed_and_probed(host):
    host.run("systemd-run -q --unit=fake-elasticsearch /usr/bin/python3 -m http.server 9201 "
             "--bind 127.0.0.1")
    write_env(host, ELASTIC_HOST="127.0.0.1", ELASTIC_SCHEME="http", ELASTIC_PORT="9201")
    install(host, "--agent-interval 2")
    start_all(host)
    host.wait_until(f"{TOOL} status --json >/dev/null", timeout=60)
    status = json.loads(tool(host, "status --json").stdout)
    scheduler = next(w for w in status["workers"]
                     if w["unit"] == "tracardi-scheduler.service")
    assert scheduler["dependencies"]["elasticsearch"] is True
    host.run("systemctl stop fake-elasticsearch")
    host.wait_until(f"journalctl -q --since @{host.since} MESSAGE_ID={UNREACHABLE} "
                    "TRACARDI_DEPENDENCY=elasticsearch | grep -q .", timeout=30)


AGENT_INTERVAL = 45
WATCHED_FOR = 180  # seconds: four times the old fixed WatchdogSec=30


def test_a_45_second_agent_interval_runs_three_minutes_without_a_watchdog_kill(host):
    write_env(host)
    install(host, f"--agent-interval {AGENT_INTERVAL} --start")
    host.wait_until("systemctl is-active -q tracardi-agent", timeout=30)
    shown = "systemctl show -p MainPID -p NRestarts -p WatchdogUSec tracardi-agent"
    before = dict(line.split("=", 1) for line in host.run(shown).stdout.splitlines())
    assert before["WatchdogUSec"] == "2min 15s"
    time.sleep(WATCHED_FOR)
    after = dict(line.split("=", 1) for line in host.run(shown).stdout.splitlines())
    assert after == before  # the same process, never restarted
    assert host.run(f"journalctl -q --since @{host.since} -u tracardi-agent "
                    "| grep -c 'Watchdog timeout' || true").stdout.strip() == "0"


def test_install_root_with_start_is_refused_with_nothing_written(host):
    write_env(host)
    result = tool(host, f"install --root /tmp/offline --env-file {ENV_SOURCE} --start",
                  check=False)
    assert result.returncode == 2  # a usage error
    assert "cannot be used with --root" in result.stderr
    assert host.run("test -e /tmp/offline", check=False).returncode == 1
