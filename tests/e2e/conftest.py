"""Fixtures of the end-to-end tests: a booted sandbox host (see sandbox.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .guest import Guest
from .host import Host
from .operator import uninstall_everything
from .releases import VARIABLE as RELEASE_VARIABLE
from .releases import Release, ReleaseError, prepare, selected
from .sandbox import Sandbox, missing_programs
from .standin import build_standin_images, start_fake_elasticsearch, start_redis
from .vm import REPORT as VM_REPORT
from .vm import PreparationError, provisioned_guest, report, selected_vm_releases
from .vm import prepare as prepare_vm

E2E_DIR = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs root; boots a real systemd and dockerd")
    config.addinivalue_line("markers", "machine_release_only: inspects what only a build on "
                            "the machine's release makes (the rpm), or boots the machine's own "
                            "root whatever the tier; left out of other tiers")
    config.addinivalue_line("markers", "releases(*names, reason): needs what only these "
                            "releases have (the reason says what); left out of other tiers")
    config.addinivalue_line(
        "markers", "unhealed_hang: the update worker's hang after a Redis outage, not healed"
    )
    config.addinivalue_line("markers", "vm: boots Debian VMs under qemu (test_vm.py); "
                            "run only when -m names it")
    config.addinivalue_line("markers", "vm_releases(*names): runs on the guests of these "
                            "VM releases only (vm_guest's); left out on the others")
    # SIGTERM ends the run as Ctrl-C does: the fixtures' teardown still shuts the sandboxes
    # and guests down (scripts/test stops a VM tier this way when a sandbox tier failed).
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_report_header() -> str:
    return f"e2e release: {selected().name} (set {RELEASE_VARIABLE} to change it)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
    # Deselected, not skipped: the tier of their release runs them. The VM tier is a run of
    # its own, when -m names it (scripts/test): not part of a sandbox tier's.
    vm_tier = "vm" in config.getoption("markexpr", "")
    left_out = [item for item in items if not _runs_on(item, selected(), vm_tier)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


def _runs_on(item: pytest.Item, release: Release, vm_tier: bool) -> bool:
    if item.get_closest_marker("vm") and not vm_tier:
        return False
    only = item.get_closest_marker("releases")
    if only is not None and release.name not in only.args:
        return False
    guests = item.get_closest_marker("vm_releases")
    callspec = getattr(item, "callspec", None)
    if guests is not None and callspec and callspec.params.get("vm_guest") not in guests.args:
        return False
    return release.is_machine or not item.get_closest_marker("machine_release_only")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if VM_REPORT:
        terminalreporter.section("what the VMs printed, and how long each step took")
        for line in VM_REPORT:
            terminalreporter.write_line(line)


def _cannot_run(message: str) -> None:
    """Skip; fail instead on CI, where everything the e2e tests need must be there."""
    message = "e2e tests cannot run: " + message
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_host() -> None:
    """Root, and Debian's packages on the machine when the sandbox boots the machine's root."""
    problems = [] if os.geteuid() == 0 else ["not root"]
    missing = missing_programs()
    if missing and selected().is_machine:
        problems.append(f"missing {' '.join(missing)} (as root, scripts/test installs them)")
    if problems:
        _cannot_run("; ".join(problems))


@pytest.fixture(scope="session")
def lower_root() -> Path:
    """The root filesystem the sandboxes boot: the selected release's (releases.py)."""
    require_host()
    try:
        return prepare(selected())
    except ReleaseError as exc:
        _cannot_run(str(exc))
        raise


@pytest.fixture(scope="session")
def sandbox(lower_root: Path) -> Iterator[Sandbox]:
    """One host for the whole session: stand-in images built, Redis up."""
    host = Sandbox.boot(lower=lower_root)
    try:
        build_standin_images(host)
        start_redis(host)
        yield host
    finally:
        host.shutdown()


@pytest.fixture
def boot_host(lower_root: Path) -> Iterator[Callable[..., Sandbox]]:
    """Boots a host on a disk of its own; each call after the first is a reboot of it.

    Use it as `with boot_host(build_images=True) as host: ...`; whatever the test leaves
    running is shut down, and the disk removed, at teardown.
    """
    disk = Path(tempfile.mkdtemp(prefix="tracardi-e2e-host-", dir="/var/tmp"))
    booted: list[Sandbox] = []

    def boot(build_images: bool = False) -> Sandbox:
        host = Sandbox.boot(disk, lower=lower_root)
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


@pytest.fixture(scope="session", params=selected_vm_releases())
def vm_guest(request: pytest.FixtureRequest) -> Iterator[Guest]:
    """The VM tier's host: one VM per release, booted once for the whole session, so that
    every VM module's tests of one release run on it one after the other (pytest orders
    them by this parameter)."""
    if os.geteuid() != 0:
        pytest.skip("the VM tier runs as root (scripts/test)")
    release = request.param
    try:
        image, deb = prepare_vm(release)
    except PreparationError as exc:
        if release != "sid":
            raise
        # Unstable may be mid-transition: that tier alone is skipped, and says so.
        message = f"DEBIAN UNSTABLE NOT TESTED: its VM could not be built:\n{exc}"
        report(release, message)
        pytest.skip(message)
    with provisioned_guest(release, image, deb) as guest:
        yield guest


@dataclass
class AgentHost:
    host: Host  # the session's sandbox, or the VM tier's guest
    since: str  # the session's journal is shared: read only what this test caused

    @classmethod
    def from_now(cls, host: Host) -> AgentHost:
        """The agent of `host`, whose journal is read from this second on."""
        since = host.run("date +%s").stdout.strip()
        time.sleep(1)  # --since has a resolution of one second
        return cls(host, since)

    def entries(self, *matches: str) -> list[dict]:
        out = self.host.run(
            f"journalctl --no-pager -o json --since @{self.since} " + " ".join(matches), check=False
        ).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_for_entry(self, *matches: str, timeout: float) -> None:
        self.host.wait_until(
            f"journalctl -q --since @{self.since} {' '.join(matches)} | grep -q .", timeout=timeout
        )


@pytest.fixture
def agent_host(sandbox):
    """All workers and the agent running; a TCP listener stands in for Elasticsearch."""
    start_fake_elasticsearch(sandbox)
    yield AgentHost.from_now(sandbox)
    uninstall_everything(sandbox)
    sandbox.run("systemctl start redis-server")
