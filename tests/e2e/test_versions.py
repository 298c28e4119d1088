"""Releases after 0.8.1 on a real systemd + Docker host: Tracardi 1.2's init before two
background roles, a failing init that blocks them and says why, a scheduled job's timer
firing, and a move from 0.8.1 to 1.2 that leaves nothing of 0.8.1 behind."""

from __future__ import annotations

import shlex

import pytest

from .operator import (
    container,
    install,
    uninstall_everything,
    wait_gone,
    wait_journal,
    wait_running,
    wait_unit,
    write_env,
)
from .standin import TRACARDI_12_IMAGES, TRACARDI_12_TAG, build_standin_images

# What 1.2 needs beyond 0.8.1's settings; nothing listens there (the agent holds restarts).
SETTINGS_12 = {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": "3306",
               "PULSAR_HOST": "pulsar://127.0.0.1:6650", "PULSAR_API": "http://127.0.0.1:8080"}
ROLES = ["tracardi-background-function", "tracardi-background-logger"]
INIT = "tracardi-init.service"
JOB = "tracardi-heartbeat-visit-end"
DROPIN = f"/etc/systemd/system/{JOB}.timer.d"


@pytest.fixture(scope="module")
def images_12(sandbox):
    build_standin_images(sandbox, TRACARDI_12_IMAGES, TRACARDI_12_TAG)
    return sandbox


@pytest.fixture
def host(images_12):
    yield images_12
    images_12.run(f"rm -rf {DROPIN}")
    uninstall_everything(images_12)


def show(host, unit: str, prop: str) -> str:
    return host.run(f"systemctl show -p {prop} --value {unit}").stdout.strip()


def install_roles(host, check: bool = True):
    roles = " ".join(f"--worker {r}" for r in ROLES)
    return install(host, f"--tracardi-version 1.2.0 {roles} --start", check=check)


def test_init_runs_once_before_the_roles_each_with_its_consumer_type(host):
    write_env(host, **SETTINGS_12)
    install_roles(host)
    for role in ROLES:
        wait_running(host, role)

    wait_unit(host, INIT, ActiveState="active", SubState="exited")
    init_done = int(show(host, INIT, "ExecMainExitTimestampMonotonic"))
    for role in ROLES:
        assert int(show(host, role, "ExecMainStartTimestampMonotonic")) > init_done
        env = container(host, role)["Config"]["Env"]
        assert f"CONSUMER_TYPE=system.{role.rsplit('-', 1)[1]}" in env
        assert container(host, role)["Config"]["Image"] == "tracardi/background-worker:1.2.x"

    # Once: a worker's restart does not run init again.
    run = show(host, INIT, "InvocationID")
    before = container(host, ROLES[0])["Id"]
    host.run(f"systemctl restart {ROLES[0]}")
    wait_running(host, ROLES[0], other_than=before)
    assert show(host, INIT, "InvocationID") == run
    said = wait_journal(host, "standin start ", f"_SYSTEMD_INVOCATION_ID={run}")
    assert said.count("standin start ") == 1


def test_a_failing_init_blocks_the_roles_and_its_journal_says_why(host):
    since = host.run("date +%s").stdout.strip()
    write_env(host, STANDIN_FAIL_INIT="1", **SETTINGS_12)
    result = install_roles(host, check=False)

    assert result.returncode != 0 and "tracardi-init.service" in result.stderr
    wait_unit(host, INIT, ActiveState="failed")
    for role in ROLES:
        wait_unit(host, role, ActiveState="inactive")
        wait_gone(host, role)
    # journald writes the entry a moment after the failure: once it was not there yet. It
    # is found by the unit's SyslogIdentifier, which the output stream names: a line that
    # journald reads after the unit's cgroup is gone gets no _SYSTEMD_INVOCATION_ID (on a
    # busy machine, once, it never matched).
    wait_journal(host, f"{INIT} failed (exit-code, exited 3): {' '.join(ROLES)} require it "
                 f"and will not start until it succeeds; see journalctl -u {INIT}",
                 "-t", INIT.removesuffix(".service"), f"--since @{since}", "-p", "err")
    for role in ROLES:
        wait_journal(host, f"Dependency failed for {role}.service", "-u", role, "-n", "5")

    # Fixed, the next start runs init and then the roles.
    write_env(host, **SETTINGS_12)
    install(host)
    host.run("systemctl start tracardi.target")
    for role in ROLES:
        wait_running(host, role)
    wait_unit(host, INIT, Result="success")


def test_a_timer_fires_and_a_move_from_081_to_12_leaves_nothing_of_081(host):
    write_env(host)
    install(host, "--tracardi-version 0.8.1 --start")
    wait_running(host, "tracardi-update")
    # The chart's */20 shortened by an operator's drop-in, as systemd lets one do.
    host.run(f"mkdir -p {DROPIN} && printf '[Timer]\\nOnCalendar=\\nOnCalendar=*:*:0/2\\n"
             f"RandomizedDelaySec=0\\nAccuracySec=1s\\n' > {DROPIN}/soon.conf && "
             f"systemctl daemon-reload && systemctl restart {JOB}.timer")
    ran = wait_journal(host, "standin done", "-u", f"{JOB}.service", timeout=20)
    assert "env-names:" in ran and " QUALIFY_BY " in ran and " LICENSE " in ran

    write_env(host, **SETTINGS_12)
    moved = install(host, "--tracardi-version 1.2.0 --start")
    assert moved.stdout.startswith("Tracardi 0.8.1 -> 1.2.0: stop and disable ")
    wait_running(host, "tracardi-background-function")

    loaded = sorted(["tracardi.target", "tracardi-agent.service", INIT, "tracardi-apm.service",
                     "tracardi-update.service", "tracardi-background-function.service",
                     "tracardi-background-logger.service",
                     "tracardi-background-destination.service"])
    host.wait_until("[ \"$(systemctl list-units --all --plain --no-legend 'tracardi*' "
                    "| awk '{print $1}' | LC_ALL=C sort | xargs)\" = "
                    f"{shlex.quote(' '.join(loaded))} ]")
    files = host.run("ls /etc/systemd/system | grep '^tracardi' | grep -v '\\.d$'").stdout
    assert not {"tracardi-trigger.service", f"{JOB}.timer", f"{JOB}.service"} & set(files.split())
    host.wait_until("! docker ps -a --format '{{.Names}} {{.Image}}' | grep -F :0.8.1")
    host.wait_until("docker inspect -f '{{.Config.Image}}' tracardi-update "
                    "| grep -qx tracardi/update-worker:1.2.x")
