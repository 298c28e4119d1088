"""The deb and rpm of packaging/build: installed, used, upgraded and removed as an operator would.

The deb is built for the sandbox's release (`--release`, releases.py) and goes into the
sandbox (a real systemd and dockerd of that release); the rpm, which only the bookworm
build makes, is inspected and installed into a scratch root with `rpm --root`. Packages
are built once per module, the second time with a bumped version, from a copy of this
checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .operator import (
    ENV_SOURCE,
    INSTALLED_ENV,
    WORKER_UNITS,
    container,
    uninstall_everything,
    wait_no_labelled_container,
    wait_running,
    wait_unit,
    write_env,
)
from .releases import selected
from .sandbox import CHECKOUT, Sandbox
from .standin import start_fake_elasticsearch

CLI = "/usr/bin/tracardi-systemd"  # the package's, not the checkout's venv
PREFIX = "/opt/tracardi-systemd"
AGENT = "tracardi-agent.service"
PACKAGE = "tracardi-systemd"


@dataclass(frozen=True)
class Build:
    version: str  # the project's, as the CLI says it
    deb_version: str  # the deb's: the project's plus +deb12 or +deb13
    deb: Path
    rpm: Path | None  # only the bookworm build makes one


@dataclass(frozen=True)
class Builds:
    v1: Build
    v2: Build


def bumped(version: str) -> str:
    """0.1.0 -> 0.1.1: the last number of the version plus one."""
    match = re.fullmatch(r"(.*?)(\d+)", version)
    assert match, f"cannot bump {version!r}"
    return f"{match[1]}{int(match[2]) + 1}"


def build(out: Path, version: str | None = None) -> Build:
    release = selected()
    argv = [str(CHECKOUT / "packaging" / "build"), "--release", release.name, "--out", str(out)]
    if version:
        argv += ["--version", version]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"packaging/build failed:\n{result.stdout}{result.stderr}"
    made = [Path(line) for line in result.stdout.split()]
    deb = next(path for path in made if path.suffix == ".deb")
    rpm = next((path for path in made if path.suffix == ".rpm"), None)
    deb_version = deb.name.split("_")[1]
    built, _, suffix = deb_version.partition("+")
    assert suffix == f"deb{release.version}"
    assert version in (None, built)
    assert (rpm is not None) == (release.name == "bookworm")
    return Build(built, deb_version, deb, rpm)


@pytest.fixture(scope="module")
def builds() -> Iterator[Builds]:
    """v1 (the tree's version) and v2 (bumped); under the checkout, which the sandbox sees."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("the package tests run as root (scripts/test)")
    (CHECKOUT / "dist").mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="test-packages-", dir=CHECKOUT / "dist"))
    try:
        v1 = build(out / "v1")
        yield Builds(v1, build(out / "v2", bumped(v1.version)))
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def deb_host(sandbox: Sandbox) -> Iterator[Sandbox]:
    write_env(sandbox)
    start_fake_elasticsearch(sandbox)  # `status` is healthy only with it reachable
    yield sandbox
    # Whatever the test left: the workers (with the checkout's CLI, which reads the same
    # manifest), then the package, so that the other e2e tests find the host as it was.
    uninstall_everything(sandbox)
    sandbox.run(f"dpkg --purge {PACKAGE} >/dev/null; systemctl daemon-reload; "
                f"systemctl reset-failed {AGENT}", check=False)


def install_workers(host: Sandbox) -> dict[str, str]:
    """The operator's install with the packaged CLI; start everything; container ids."""
    host.run(f"{CLI} install --env-file {ENV_SOURCE} --network host")
    host.run("systemctl start tracardi.target")
    ids = {u: wait_running(host, u.removesuffix(".service")) for u in WORKER_UNITS}
    host.wait_until(f"systemctl is-active -q {AGENT}", timeout=30)
    return ids


def enabled_units(host: Sandbox) -> list[str]:
    """Every tracardi unit with an enablement symlink anywhere systemd looks."""
    out = host.run(
        "find /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system "
        "-path '*.wants/*' -name 'tracardi*' 2>/dev/null; true"
    ).stdout
    return out.split()


def test_deb_installs_runs_the_workers_and_leaves_nothing_after_removal(deb_host, builds):
    host = deb_host
    host.run(f"dpkg -i {builds.v1.deb}")

    assert host.run(f"{CLI} --version").stdout.split()[-1] == builds.v1.version
    # The deb names the release's own interpreter, the one its venv links to.
    python = host.run("basename $(readlink -f /usr/bin/python3)").stdout.strip()
    depends = host.run(f"dpkg-query -W -f '${{Depends}}' {PACKAGE}").stdout
    assert depends.split(", ")[0] == python
    assert host.run(f"readlink -f {PREFIX}/bin/python").stdout.strip() == f"/usr/bin/{python}"
    # The package enables nothing by itself: the agent is `install`'s to enable.
    assert host.run(f"systemctl is-enabled {AGENT}", check=False).stdout.strip() == "disabled"
    # (systemd names it /lib/...: Debian 12 has merged /usr, /lib is a link to usr/lib.)
    fragment = host.run(f"realpath $(systemctl show -p FragmentPath --value {AGENT})").stdout
    assert fragment.strip() == f"/usr/lib/systemd/system/{AGENT}"
    # journalctl -x explains the agent's entries: the package's catalog is indexed.
    listed = host.run("journalctl --list-catalog").stdout
    assert "9c2e7344316c42fcbd4d6f148245cdd9 tracardi-systemd: systemd gave up" in listed
    host.run(f"test -f /usr/share/{PACKAGE}/tracardi.rules.yml")
    # its man page, found by man's own lookup, and the completions where each shell looks
    page = f"/usr/share/man/man1/{PACKAGE}.1.gz"
    host.run(f"test -s {page}")
    if host.run("command -v man", check=False).returncode == 0:  # the Debian 13 root has no man-db
        assert host.run(f"man -w {PACKAGE}").stdout.strip() == page
    assert "uninstall" in host.run(f"zcat /usr/share/man/man1/{PACKAGE}.1.gz").stdout
    host.run(f"test -s /usr/share/bash-completion/completions/{PACKAGE} && "
             f"test -s /usr/share/zsh/vendor-completions/_{PACKAGE} && "
             f"test -s /usr/share/fish/vendor_completions.d/{PACKAGE}.fish")
    install_workers(host)
    # install's copy shadows the package's and runs the packaged CLI too.
    unit = host.run(f"systemctl cat {AGENT}").stdout
    assert unit.startswith(f"# /etc/systemd/system/{AGENT}\n")
    assert f"ExecStart={CLI} agent " in unit
    host.wait_until(f"{CLI} status", timeout=60)  # exit 0: every worker and the agent run
    owned = host.run(f"dpkg -L {PACKAGE}").stdout.split()

    host.run(f"{CLI} uninstall --purge")
    host.run(f"dpkg -r {PACKAGE}")

    left = host.run(
        "for p in " + " ".join(owned) + '; do [ -e "$p" ] || [ -L "$p" ] || continue; '
        '[ -d "$p" ] && [ ! -L "$p" ] || echo "$p"; done; '
        f"ls -d {PREFIX} /usr/share/doc/{PACKAGE} 2>/dev/null; true"
    ).stdout.split()
    assert left == [], f"left behind by dpkg -r: {left}"
    assert enabled_units(host) == []
    wait_unit(host, AGENT, ActiveState="inactive")
    assert host.run("ls /etc/systemd/system | grep tracardi; true").stdout == ""
    wait_no_labelled_container(host)


def test_removing_the_package_first_stops_the_agent_but_not_the_workers(deb_host, builds):
    host = deb_host
    host.run(f"dpkg -i {builds.v1.deb}")
    ids = install_workers(host)

    removal = host.run(f"dpkg -r {PACKAGE}")

    assert "tracardi-systemd uninstall" in removal.stderr  # says what to run
    host.wait_until(f"! systemctl is-active -q {AGENT}")
    assert f"tracardi.target.wants/{AGENT}" not in " ".join(enabled_units(host))
    for unit, container_id in ids.items():
        info = container(host, unit.removesuffix(".service"))
        assert info and info["Id"] == container_id and info["State"]["Running"], unit


def test_upgrade_keeps_the_env_file_and_the_running_workers(deb_host, builds):
    host = deb_host
    host.run(f"dpkg -i {builds.v1.deb}")
    ids = install_workers(host)
    env_before = host.run(f"sha256sum {INSTALLED_ENV}; stat -c '%a %U' {INSTALLED_ENV}").stdout
    agent_pid = host.run(f"systemctl show -p MainPID --value {AGENT}").stdout.strip()

    host.run(f"dpkg -i {builds.v2.deb}")

    installed = host.run(f"dpkg-query -W -f '${{Version}}' {PACKAGE}").stdout
    assert installed == builds.v2.deb_version
    assert host.run(f"{CLI} --version").stdout.split()[-1] == builds.v2.version
    assert host.run(f"sha256sum {INSTALLED_ENV}; stat -c '%a %U' {INSTALLED_ENV}").stdout == (
        env_before
    )
    for unit, container_id in ids.items():
        info = container(host, unit.removesuffix(".service"))
        assert info and info["Id"] == container_id and info["State"]["Running"], unit
    # The agent was restarted on the new code, and is still enabled by install.
    host.wait_until(f"systemctl is-active -q {AGENT} && "
                    f"[ \"$(systemctl show -p MainPID --value {AGENT})\" != {agent_pid} ]",
                    timeout=30)
    assert host.run(f"systemctl is-enabled {AGENT}").stdout.strip() == "enabled"
    host.wait_until(f"{CLI} status", timeout=60)


@pytest.fixture
def rpm_tool() -> str:
    rpm = shutil.which("rpm")
    if rpm is None and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                       "apt-get install -y -qq --no-install-recommends rpm >/dev/null",
                       shell=True, check=True)
        rpm = shutil.which("rpm")
    if rpm is None:
        message = "rpm is missing (apt-get install rpm)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    return rpm


def rpm_query(rpm: str, *args: str) -> str:
    return subprocess.run([rpm, *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.machine_release_only
def test_rpm_contents_dependencies_and_scripts(builds, rpm_tool):
    assert builds.v1.rpm is not None
    package = str(builds.v1.rpm)
    assert builds.v1.rpm.name == f"{PACKAGE}-{builds.v1.version}-1.x86_64.rpm"

    files = rpm_query(rpm_tool, "-qpl", package).split()
    for path in (f"/usr/bin/{PACKAGE}", f"/usr/lib/systemd/system/{AGENT}",
                 f"{PREFIX}/bin/python", f"{PREFIX}/bin/{PACKAGE}", f"{PREFIX}/pyvenv.cfg",
                 f"{PREFIX}/lib/python3.11/site-packages/tracardi_systemd/cli/main.py",
                 f"{PREFIX}/lib/python3.11/site-packages/tracardi_systemd/render/templates/"
                 "worker.service.j2",
                 f"/usr/lib/systemd/catalog/{PACKAGE}.catalog",
                 f"/usr/share/{PACKAGE}/tracardi.rules.yml", f"/usr/share/man/man1/{PACKAGE}.1.bz2",
                 f"/usr/share/bash-completion/completions/{PACKAGE}",
                 f"/usr/share/zsh/site-functions/_{PACKAGE}"):
        assert path in files
    assert not [f for f in files if f.startswith("/etc")]
    assert not [f for f in files if not f.startswith((PREFIX, "/usr/"))]

    requires = rpm_query(rpm_tool, "-qpR", package).split("\n")
    assert "/usr/bin/python3.11" in requires
    assert "/usr/bin/docker" in rpm_query(rpm_tool, "-qp", "--recommends", package)

    scripts = rpm_query(rpm_tool, "-qp", "--scripts", package)
    assert re.search(r"postinstall scriptlet.*\n(.*\n)*?.*daemon-reload", scripts)
    assert 'if [ "$1" -eq 0 ]' in scripts  # preun: stop and disable only on removal
    assert 'if [ "$1" -ge 1 ]' in scripts  # postun: try-restart only on upgrade
    assert scripts.count("[ -d /run/systemd/system ]") >= 3


@pytest.mark.machine_release_only
def test_rpm_installs_into_a_scratch_root_and_its_cli_runs_there(builds, rpm_tool, tmp_path):
    assert builds.v1.rpm is not None
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    # The scriptlets run chrooted in the root: give them a shell (and no systemd).
    shutil.copy("/bin/busybox", root / "bin" / "sh")
    subprocess.run([rpm_tool, "--root", str(root), "--initdb"], check=True)
    subprocess.run([rpm_tool, "--root", str(root), "--nodeps", "-i", str(builds.v1.rpm)],
                   check=True, capture_output=True, text=True)

    assert os.readlink(root / "usr/bin" / PACKAGE) == f"{PREFIX}/bin/{PACKAGE}"
    assert (root / "usr/lib/systemd/system" / AGENT).read_text().count(
        f"ExecStart=/usr/bin/{PACKAGE} agent ") == 1
    assert (root / PREFIX.lstrip("/") / "bin" / PACKAGE).read_text().startswith(
        f"#!{PREFIX}/bin/python\n")
    assert not list(root.glob("etc/**/*.*"))

    # The venv's interpreter (a link to the host's python3.11) runs the CLI from the root.
    python = root / PREFIX.lstrip("/") / "bin" / "python"
    run = subprocess.run(
        [str(python), "-I", "-c", "import sys, tracardi_systemd.cli.main as c; sys.argv[0] = "
         f"'{PACKAGE}'; print(c.__file__); c.main()", "--version"],
        capture_output=True, text=True, check=True, cwd=root,
    )
    assert run.stdout.splitlines() == [
        f"{root}{PREFIX}/lib/python3.11/site-packages/tracardi_systemd/cli/main.py",
        f"{PACKAGE}, version {builds.v1.version}",
    ]
    help_text = subprocess.run([str(python), "-I", str(root / PREFIX.lstrip("/") / "bin" / PACKAGE),
                                "--help"], capture_output=True, text=True, check=True,
                               cwd=root).stdout
    assert "install" in help_text and "agent" in help_text

    subprocess.run([rpm_tool, "--root", str(root), "-e", PACKAGE], check=True)
    assert not (root / PREFIX.lstrip("/")).exists()
    assert not (root / "usr/bin" / PACKAGE).exists()


def test_lintian_and_rpmlint_find_nothing_unexplained(builds):
    result = subprocess.run([str(CHECKOUT / "packaging" / "lint"), str(builds.v1.deb.parent)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
