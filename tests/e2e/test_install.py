"""`install`, `status`, `uninstall` on a real systemd + Docker host, as an operator uses them."""

from __future__ import annotations

import json

import pytest

from .operator import (
    ELASTIC_PASSWORD,
    INSTALLED_ENV,
    LICENSE,
    WORKER_UNITS,
    container,
    install,
    journal,
    sha256,
    start_all,
    tool,
    uninstall_everything,
    wait_gone,
    wait_no_labelled_container,
    wait_running,
    wait_unit,
    write_env,
)

SECRETS = (LICENSE, ELASTIC_PASSWORD)


@pytest.fixture
def host(sandbox):
    write_env(sandbox)
    yield sandbox
    uninstall_everything(sandbox)


def test_scheduler_runs_the_real_image_with_its_settings_and_logs_once(host):
    install(host)
    host.run("systemctl start tracardi-scheduler")
    wait_running(host, "tracardi-scheduler")

    assert container(host, "tracardi-scheduler")["Config"]["Image"] == (
        "tracardi/com-tracardi-scheduler-worker:0.8.1"
    )
    # This run of the unit only: the session's journal holds other tests' runs too.
    run = host.run("systemctl show -p InvocationID --value tracardi-scheduler").stdout.strip()
    host.wait_until(f"journalctl _SYSTEMD_INVOCATION_ID={run} -o cat | grep -q '^redis ok'")
    log = journal(host, f"_SYSTEMD_INVOCATION_ID={run}")
    names = next(line for line in log.splitlines() if line.startswith("env-names:")).split()[1:]
    for needed in ("REDIS_HOST", "ELASTIC_HOST", "LOGGING_LEVEL", "LICENSE", "SAVE_LOGS"):
        assert needed in names
    assert "API_LICENSE" not in names
    assert f"secret-sha256 LICENSE {sha256(LICENSE)}" in log
    # One log path: every line of the container's output is in the unit's journal once.
    assert log.count("standin start ") == 1
    assert log.count("env-names:") == 1


def test_target_starts_all_workers_and_stop_leaves_no_container(host):
    install(host)
    start_all(host)

    host.run("systemctl stop tracardi.target", timeout=120)

    wait_no_labelled_container(host)
    for unit in WORKER_UNITS:
        wait_unit(host, unit, ActiveState="inactive")


def test_killed_container_is_replaced_without_name_conflict(host):
    install(host)
    host.run("systemctl start tracardi-scheduler")
    first = wait_running(host, "tracardi-scheduler")

    host.run("docker kill tracardi-scheduler")
    second = wait_running(host, "tracardi-scheduler", other_than=first)

    assert second != first
    assert "already in use" not in journal(host, "-u", "tracardi-scheduler")


def test_workers_come_back_after_docker_restarts(host):
    install(host)
    before = start_all(host)

    host.run("systemctl restart docker", timeout=120)

    for unit in WORKER_UNITS:
        name = unit.removesuffix(".service")
        assert wait_running(host, name, timeout=60, other_than=before[unit]) != before[unit]


def test_secrets_appear_nowhere_while_workers_run(host):
    install(host)
    start_all(host)
    host.wait_until("journalctl -u tracardi-trigger -o cat | grep -q '^secret-sha256 LICENSE'")

    places = {
        "argv": "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '",
        "unit files": "cat /etc/systemd/system/tracardi*",
        "systemctl show": "systemctl show 'tracardi*' docker.service",
        "journal": "journalctl --no-pager -o json",
    }
    outputs = {where: host.run(cmd, check=False).stdout for where, cmd in places.items()}
    outputs["status"] = tool(host, "status", check=False).stdout
    outputs["status --json"] = tool(host, "status --json", check=False).stdout
    for where, text in outputs.items():
        assert text, f"nothing read from {where}"
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into {where}"


def test_second_install_changes_nothing_and_a_broken_env_file_changes_nothing(host):
    install(host)
    snapshot = (
        "find /etc/systemd/system /etc/tracardi /var/lib/tracardi-systemd "
        "-type f -printf '%p %T@ %m\\n' | sort; "
        "cat /etc/systemd/system/tracardi* /var/lib/tracardi-systemd/* | sha256sum"
    )
    before = host.run(snapshot).stdout

    again = install(host)
    assert "nothing to change" in again.stdout
    assert host.run(snapshot).stdout == before

    write_env(host)
    host.run("echo 'export LOGGING_LEVEL=DEBUG' >> /root/env-docker")
    broken = install(host, check=False)
    assert broken.returncode != 0
    assert "/root/env-docker:7:" in broken.stderr and "export" in broken.stderr
    assert host.run(snapshot).stdout == before


def test_uninstall_removes_what_install_wrote_and_keeps_dropins_and_env_file(host):
    install(host)
    written = json.loads(host.run("cat /var/lib/tracardi-systemd/manifest.json").stdout)["files"]
    host.run(
        "mkdir -p /etc/systemd/system/tracardi-scheduler.service.d && "
        "printf '[Service]\\nEnvironment=X=1\\n' > "
        "/etc/systemd/system/tracardi-scheduler.service.d/local.conf"
    )

    tool(host, "uninstall")

    for name in written:
        assert host.run(f"test -e /etc/systemd/system/{name}", check=False).returncode == 1
    host.run("test -f /etc/systemd/system/tracardi-scheduler.service.d/local.conf")
    host.run(f"test -f {INSTALLED_ENV}")
    host.run("test ! -e /etc/systemd/system/tracardi.target.wants")

    install(host)
    tool(host, "uninstall --purge")
    host.run(f"test ! -e {INSTALLED_ENV}")
    host.run("rm -r /etc/systemd/system/tracardi-scheduler.service.d")


def test_status_json_matches_systemctl_and_docker(host):
    install(host)
    start_all(host)
    host.run("systemctl stop tracardi-update")
    wait_unit(host, "tracardi-update", ActiveState="inactive", SubState="dead")
    wait_gone(host, "tracardi-update")

    report = json.loads(tool(host, "status --json", check=False).stdout)

    rows = {row["unit"]: row for row in report["workers"]}
    assert set(rows) == set(WORKER_UNITS)
    for unit, row in rows.items():
        active = host.run(f"systemctl show -p ActiveState --value {unit}").stdout.strip()
        sub = host.run(f"systemctl show -p SubState --value {unit}").stdout.strip()
        assert row["unit_state"] == f"{active}/{sub}"
        info = container(host, unit.removesuffix(".service"))
        assert row["container"] == (info["State"]["Status"] if info else "missing")
        if info:
            assert row["image"] == info["Config"]["Image"]
            assert row["memory_bytes"] > 0
    assert rows["tracardi-update.service"]["unit_state"] == "inactive/dead"
    assert report["healthy"] is False
