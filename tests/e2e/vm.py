"""The VM tier: which Debian releases boot as VMs (guest.py), and how one is made ready for
the tests: its disk (scripts/vm-image, cached), the checkout's deb for that release
(packaging/build), the deb installed, the stand-in images built, Redis and a stand-in
Elasticsearch up.

TRACARDI_VM_RELEASES picks the releases (default: all three, in this order), and
TRACARDI_VM_PODMAN_RELEASES those of them that run the Podman tests too (default: 13 and
unstable, the two whose Podman has Quadlet). Every step is timed; what each guest printed
(versions) and the times go into REPORT, which the e2e conftest prints at the end of the
run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .guest import Guest
from .sandbox import CHECKOUT
from .standin import build_standin_images, enable_fake_elasticsearch, start_redis

VARIABLE = "TRACARDI_VM_RELEASES"


@dataclass(frozen=True)
class VmRelease:
    name: str
    codename: str  # VERSION_CODENAME of /etc/os-release (sid names the next release)
    systemd: range  # the major versions of systemd accepted
    docker: str  # the start of docker.io's version
    python: str


VM_RELEASES = {
    "bookworm": VmRelease("bookworm", "bookworm", range(252, 253), "20.10", "3.11"),
    "trixie": VmRelease("trixie", "trixie", range(257, 258), "26.1", "3.13"),
    # Unstable moves: any systemd from 258 (which no longer boots on cgroup v1).
    "sid": VmRelease("sid", "forky", range(258, 300), "2", "3.14"),
}
PODMAN_VARIABLE = "TRACARDI_VM_PODMAN_RELEASES"
QUADLET_RELEASES = ("trixie", "sid")
REPORT: list[str] = []


def _named(variable: str, allowed: tuple[str, ...]) -> list[str]:
    """The releases `variable` names (all of `allowed` when unset); a name not allowed is
    refused."""
    names = os.environ.get(variable, " ".join(allowed)).split()
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(f"{variable}: {' '.join(unknown)} not among {' '.join(allowed)}")
    return names


def selected_vm_releases() -> list[str]:
    return _named(VARIABLE, tuple(VM_RELEASES))


# The releases whose guest runs test_vm_podman.py after test_vm.py (default: both whose
# Podman has Quadlet; Debian 12's 4.3 has none). It re-arms a crash loop, reboots and runs
# the real Celery worker on the release's systemd, so test_vm.py's re-arm, reboot and real
# Celery worker (through a Redis outage, a heal the same on every release and engine) run
# with Docker on the other releases only (DOCKER_ONLY), for CI's 60 minutes; the sandbox
# tiers run all three with Docker on Debian 12's and 13's systemd and dockerd.
PODMAN_RELEASES = _named(PODMAN_VARIABLE, QUADLET_RELEASES)
DOCKER_ONLY = [name for name in VM_RELEASES if name not in PODMAN_RELEASES]


def report(release: str, line: str) -> None:
    REPORT.append(f"[{release}] {line}")


@contextmanager
def timed(release: str, step: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    report(release, f"{step}: {time.monotonic() - started:.1f} s")


class PreparationError(RuntimeError):
    """What a release needs could not be built from Debian's archive (e.g. mid-transition)."""


def _script(*argv: str, timeout: float = 1800) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise PreparationError(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def vm_image(release: str) -> Path:
    with timed(release, "disk image (scripts/vm-image; cached after the first run)"):
        return Path(_script(str(CHECKOUT / "scripts" / "vm-image"), release).strip())


def build_deb(release: str, out: Path) -> Path:
    with timed(release, "deb (packaging/build)"):
        made = _script(str(CHECKOUT / "packaging" / "build"), "--release", release,
                       "--out", str(out)).split()
    return Path(next(path for path in made if path.endswith(".deb")))


VERSIONS = """
. /etc/os-release; echo "os: $PRETTY_NAME"
echo "kernel: $(uname -r)"
echo "systemd: $(systemctl --version | head -n 1)"
server='{{.Server.Version}} (API {{.Server.APIVersion}}, min {{.Server.MinAPIVersion}})'
echo "docker: client $(docker version --format '{{.Client.Version}}'), server \
$(docker version --format "$server")"
echo "python: $(/opt/tracardi-systemd/bin/python --version)"
echo "tool: $(tracardi-systemd --version)"
echo "cgroup: $(stat -f -c %T /sys/fs/cgroup): $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "apparmor: $(cat /sys/module/apparmor/parameters/enabled)"
"""


def prepare(release: str) -> tuple[Path, Path]:
    """The disk image of `release` and the checkout's deb for it (in a folder of its own
    under dist/, which provisioned_guest removes)."""
    image = vm_image(release)
    (CHECKOUT / "dist").mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f"vm-{release}-", dir=CHECKOUT / "dist"))
    try:
        return image, build_deb(release, out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


@contextmanager
def provisioned_guest(release: str, image: Path, deb: Path) -> Iterator[Guest]:
    """A booted guest of `release` with the deb installed, the stand-in worker images built,
    Redis and a stand-in Elasticsearch up; powered off at the end."""
    try:
        with timed(release, "boot to multi-user, dockerd up"):
            guest = Guest.boot(image, release)
        try:
            with timed(release, "deb installed (dpkg -i)"):
                guest.put(deb, f"/root/{deb.name}")
                guest.run(f"dpkg -i /root/{deb.name}", timeout=300)
            with timed(release, "stand-in images built, Redis and Elasticsearch up"):
                build_standin_images(guest)
                start_redis(guest)
                enable_fake_elasticsearch(guest)
            for line in guest.run(VERSIONS).stdout.splitlines():
                report(release, line)
            yield guest
        finally:
            with timed(release, "power off"):
                guest.shutdown()
    finally:
        shutil.rmtree(deb.parent, ignore_errors=True)
