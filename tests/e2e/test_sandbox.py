"""Smoke tests of the harness itself: the sandbox host, its journal, docker, the stand-ins."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable

import pytest

from .operator import wait_unit
from .sandbox import DOCKER, Sandbox

SCHEDULER = "tracardi/com-tracardi-scheduler-worker:0.8.1"
RUN = f"{DOCKER} run --rm --network host --init"


def test_systemd_is_pid_1_and_the_system_is_running(sandbox: Sandbox) -> None:
    assert sandbox.run("cat /proc/1/comm").stdout.strip() == "systemd"
    assert sandbox.run("systemctl is-system-running").stdout.strip() == "running"
    assert sandbox.run("redis-cli -h 127.0.0.1 ping").stdout.strip() == "PONG"


def test_journal_receives_messages(sandbox: Sandbox) -> None:
    sandbox.run("echo hello-journal | systemd-cat -t e2e-probe")
    sandbox.wait_until("journalctl -t e2e-probe | grep -q hello-journal")


def test_transient_unit_runs_a_standin_and_journals_its_output(sandbox: Sandbox) -> None:
    sandbox.run(
        "systemd-run --unit=e2e-transient -p Type=simple "
        "--setenv=REDIS_HOST=127.0.0.1 --setenv=LICENSE=xyz "
        f"{RUN} -e REDIS_HOST -e LICENSE {SCHEDULER}"
    )
    journal = sandbox.wait_until(
        "journalctl -u e2e-transient | grep -q 'standin alive' && journalctl -u e2e-transient"
    )
    assert "redis ok" in journal
    assert "env-names: LICENSE REDIS_HOST" in journal
    assert f"secret-sha256 LICENSE {hashlib.sha256(b'xyz').hexdigest()}" in journal
    assert "xyz" not in journal

    # Stopping is prompt thanks to --init, but `docker run` then exits 143 (128 + SIGTERM,
    # as a Python worker would): without SuccessExitStatus=143 the unit ends up failed.
    sandbox.run("systemctl stop e2e-transient", timeout=10)
    wait_unit(sandbox, "e2e-transient", Result="exit-code", ExecMainStatus="143")
    sandbox.run("systemctl reset-failed e2e-transient")


def test_log_driver_none_still_delivers_output_to_the_unit_journal(sandbox: Sandbox) -> None:
    # Attached `docker run` streams the container's output to its own stdout whatever the
    # log driver: with `none` each line reaches the unit's journal once and nothing else
    # keeps a copy (so `docker logs` has nothing to read).
    sandbox.run(
        "systemd-run --unit=e2e-nolog -p Type=simple "
        f"{RUN} --log-driver none --name e2e-nolog {SCHEDULER}"
    )
    journal = sandbox.wait_until(
        "journalctl -u e2e-nolog | grep -q 'standin alive' && journalctl -u e2e-nolog"
    )
    assert journal.count("standin start") == 1
    assert "redis ok" in journal
    logs = sandbox.run(f"{DOCKER} logs e2e-nolog", check=False)
    assert "does not support reading" in logs.stderr
    sandbox.run("systemctl stop e2e-nolog; systemctl reset-failed e2e-nolog || true")


@pytest.mark.parametrize(
    ("env", "status", "line"),
    [
        ({"STANDIN_FAIL_SCHEDULER": "1"}, 3, "standin failing"),
        ({"STANDIN_WORKER": "trigger", "STANDIN_FAIL_TRIGGER": "1"}, 3, "standin failing"),
        ({"STANDIN_EXIT_AFTER": "1"}, 0, "standin exiting 0 after 1 s"),
        ({"REDIS_PORT": "1", "STANDIN_REQUIRE_REDIS": "1"}, 1, "redis unreachable"),
    ],
)
def test_standin_behaviour(sandbox: Sandbox, env: dict[str, str], status: int, line: str) -> None:
    flags = " ".join(f"-e {shlex.quote(f'{name}={value}')}" for name, value in env.items())
    result = sandbox.run(f"{RUN} {flags} {SCHEDULER}", check=False, timeout=30)
    assert result.returncode == status, result.stdout + result.stderr
    assert line in result.stdout


def test_standin_holds_memory(sandbox: Sandbox) -> None:
    sandbox.run(
        f"{DOCKER} run -d --network host --init --name e2e-alloc "
        f"-e STANDIN_ALLOC_MB_SCHEDULER=64 {SCHEDULER}"
    )
    try:
        sandbox.wait_until(f"{DOCKER} logs e2e-alloc | grep -q 'standin holding 64 MB'")
        usage = sandbox.run(
            f"{DOCKER} stats --no-stream --format '{{{{.MemUsage}}}}' e2e-alloc"
        ).stdout
        assert usage.split()[0].endswith("MiB") and float(usage.split()[0][:-3]) >= 64, usage
    finally:
        sandbox.run(f"{DOCKER} rm -f e2e-alloc")


UNIT = f"""[Unit]
Requires=docker.service
After=docker.service

[Service]
ExecStartPre=-{DOCKER} rm -f e2e-reboot
ExecStart={RUN} --name e2e-reboot tracardi/update-worker:0.8.1
ExecStop={DOCKER} stop -t 5 e2e-reboot
Restart=always

[Install]
WantedBy=multi-user.target
"""


def test_enabled_unit_comes_back_after_a_reboot(boot_host: Callable[..., Sandbox]) -> None:
    with boot_host(build_images=True) as host:
        host.run("cat > /etc/systemd/system/e2e-reboot.service", input=UNIT)
        host.run("systemctl daemon-reload && systemctl enable --now e2e-reboot")
        host.wait_until("journalctl -u e2e-reboot | grep -q 'standin alive'")

    with boot_host() as host:
        wait_unit(host, "e2e-reboot", ActiveState="active")
        host.run(f"{DOCKER} image inspect tracardi/update-worker:0.8.1 >/dev/null")
        # Not `journalctl -b`: every boot of a sandbox has the machine's boot ID.
        invocation = host.run("systemctl show -p InvocationID --value e2e-reboot").stdout
        host.wait_until(
            f"journalctl _SYSTEMD_INVOCATION_ID={invocation.strip()} | grep -q 'redis ok'"
        )
        host.wait_until(f"{DOCKER} ps -q --filter name=e2e-reboot | grep -q .")
