"""A reboot of a host with installed workers: they come up with no operator command."""

from __future__ import annotations

from .operator import WORKER_UNITS, install, wait_running, write_env


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
