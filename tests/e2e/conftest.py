"""Fixtures of the end-to-end tests: a booted sandbox host (see sandbox.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .sandbox import Sandbox
from .standin import build_standin_images

E2E_DIR = Path(__file__).resolve().parent
NEEDED = ["/lib/systemd/systemd", "/usr/sbin/dockerd", "/usr/bin/docker", "/bin/busybox"]
NEEDED += ["/usr/bin/redis-server", "/usr/bin/nsenter", "/usr/bin/unshare"]
PACKAGES = "systemd docker.io busybox-static redis-server util-linux"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs root; boots a real systemd and dockerd")
    config.addinivalue_line(
        "markers", "unhealed_hang: the update worker's hang after a Redis outage, not healed"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def require_host() -> None:
    """Skip without root and Debian's packages; fail instead on CI, where they must be."""
    problems = [path for path in NEEDED if not os.path.exists(path)]
    if problems:
        problems = [f"missing {' '.join(problems)} (apt-get install {PACKAGES})"]
    if os.geteuid() != 0:
        problems.insert(0, "not root")
    if problems:
        message = "e2e tests cannot run: " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def start_redis(sandbox: Sandbox) -> None:
    """Debian's redis-server unit, answering on 127.0.0.1:6379 (the sandbox's loopback)."""
    sandbox.run("systemctl start redis-server.service")
    sandbox.wait_until("redis-cli -h 127.0.0.1 -p 6379 ping | grep -qx PONG", timeout=15)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One host for the whole session: stand-in images built, Redis up."""
    require_host()
    host = Sandbox.boot()
    try:
        build_standin_images(host)
        start_redis(host)
        yield host
    finally:
        host.shutdown()


@pytest.fixture
def boot_host() -> Iterator[Callable[..., Sandbox]]:
    """Boots a host on a disk of its own; each call after the first is a reboot of it.

    Use it as `with boot_host(build_images=True) as host: ...`; whatever the test leaves
    running is shut down, and the disk removed, at teardown.
    """
    require_host()
    disk = Path(tempfile.mkdtemp(prefix="tracardi-e2e-host-", dir="/var/tmp"))
    booted: list[Sandbox] = []

    def boot(build_images: bool = False) -> Sandbox:
        host = Sandbox.boot(disk)
        booted.append(host)
        if build_images:
            build_standin_images(host)
        start_redis(host)
        return host

    try:
        yield boot
    finally:
        for host in booted:
            host.shutdown()
        shutil.rmtree(disk, ignore_errors=True)
