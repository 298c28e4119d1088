"""A reboot of a host with installed workers: they come up with no operator command."""

from __future__ import annotations

import os
import signal

from .operator import (
    WORKER_UNITS,
    install,
    journal,
    labelled_containers,
    start_all,
    wait_running,
    write_env,
)

NAMES = sorted(unit.removesuffix(".service") for unit in WORKER_UNITS)


def test_enabled_workers_come_up_after_a_reboot(boot_host):
    host = boot_host(build_images=True)
    write_env(host)
    install(host)
    host.shutdown()

    host = boot_host()

    for unit in WORKER_UNITS:
        wait_running(host, unit.removesuffix(".service"), timeout=60)
    host.wait_until("systemctl is-active -q tracardi-agent", timeout=30)
    assert host.run("systemctl is-active tracardi.target").stdout.strip() == "active"


def test_after_a_power_loss_the_workers_come_up_with_no_name_conflict_and_no_orphan(boot_host):
    host = boot_host(build_images=True)
    write_env(host)
    install(host)
    before = start_all(host)
    host.run("sync")
    os.kill(host.pid, signal.SIGKILL)  # every process dies at once, dockerd's state says running
    host.shutdown()

    host = boot_host()

    for unit in WORKER_UNITS:
        name = unit.removesuffix(".service")
        wait_running(host, name, timeout=60, other_than=before[unit])
    assert sorted(labelled_containers(host)) == NAMES
    assert "already in use" not in journal(host, "-b", "-u", "'tracardi-*'")
