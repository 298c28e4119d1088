"""A reboot of a host with installed workers: they come up with no operator command."""

from __future__ import annotations

import os
import signal

from .operator import (
    WORKER_NAMES,
    WORKER_UNITS,
    install,
    journal,
    start_all,
    wait_labelled_containers,
    wait_running,
    wait_unit,
    write_env,
)


def test_enabled_workers_come_up_after_a_reboot(boot_host):
    host = boot_host(build_images=True)
    write_env(host)
    install(host)
    host.shutdown()

    host = boot_host()

    for unit in WORKER_UNITS:
        wait_running(host, unit.removesuffix(".service"), timeout=60)
    host.wait_until("systemctl is-active -q tracardi-agent", timeout=30)
    wait_unit(host, "tracardi.target", ActiveState="active")


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
    wait_labelled_containers(host, WORKER_NAMES)
    assert "already in use" not in journal(host, "-b", "-u", "'tracardi-*'")
