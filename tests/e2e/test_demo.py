"""scripts/demo, the README's first command, end to end: what it shows and what it leaves."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import require_host
from .sandbox import CHECKOUT

# scripts/demo boots the machine's own root: the Debian 13 tier would run the same demo
# again.
pytestmark = pytest.mark.machine_release_only

SANDBOX_DIR = re.compile(r" in (/var/tmp/tracardi-e2e-\S+)$", re.MULTILINE)


def sandbox_dir(output: str) -> Path:
    match = SANDBOX_DIR.search(output)
    assert match, output
    return Path(match[1])


def assert_nothing_left(directory: Path) -> None:
    """No directory, cgroup or process of the demo's sandbox is left on the machine."""
    assert not directory.exists()
    name = f"sandbox-{directory.name}"
    assert [top for top, _, _ in os.walk("/sys/fs/cgroup") if top.endswith(f"/{name}")] == []
    left = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            cgroups = (proc / "cgroup").read_text()
            if name in cgroups:
                status = (proc / "status").read_text().splitlines()[:3]
                left.append(f"{proc.name} {(proc / 'cmdline').read_bytes()!r} {status} {cgroups}")
    assert left == []


def test_demo_installs_runs_heals_and_tears_down() -> None:
    require_host()
    started = time.monotonic()
    result = subprocess.run(
        [str(CHECKOUT / "scripts" / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
        check=False,
    )
    print(f"scripts/demo took {time.monotonic() - started:.1f} s")
    out = result.stdout
    assert result.returncode == 0, out

    assert "# tracardi-systemd install --env-file /root/env-docker --network host" in out
    assert "create tracardi-scheduler.service" in out
    assert "# systemctl start tracardi.target" in out
    assert "# tracardi-systemd status" in out
    assert len(re.findall(r"^tracardi-\S+\.service +active/running +running ", out, re.M)) == 5
    assert re.search(r"^healthy$", out, re.M)
    recovery = re.search(r"^tracardi-scheduler runs again (\d+\.\d) s after the kill", out, re.M)
    assert recovery and float(recovery[1]) < 10, out
    assert "MESSAGE=removing container tracardi-stray: no active unit owns it" in out
    assert "# tracardi-systemd uninstall --purge" in out
    assert "removed /etc/systemd/system/tracardi.target" in out
    directory = sandbox_dir(out)
    assert f"sandbox powered off, {directory} removed" in out
    assert_nothing_left(directory)


def test_ctrl_c_during_the_demo_still_removes_the_sandbox() -> None:
    require_host()
    # What scripts/demo runs once its venv is ready.
    command = [sys.executable, "-m", "tests.e2e.demo"]
    with subprocess.Popen(
        command, cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as demo:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:
            seen.append(line)
            if line.startswith("== Install"):
                demo.send_signal(signal.SIGINT)
                break
        out = "".join(seen) + demo.communicate(timeout=90)[0]

    assert demo.returncode == 130, out
    assert "demo interrupted" in out
    assert_nothing_left(sandbox_dir(out))
