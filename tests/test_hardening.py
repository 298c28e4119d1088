"""The units' hardening as the machine's `systemd-analyze security --offline` rates it.

The e2e tests (tests/e2e/test_hardening.py) rate the installed units on the live systemd
of each supported release and run the agent's repertoire under them; this is the quick
check of the rendered files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tracardi_systemd.render.units import RenderSettings, render
from tracardi_systemd.spec.catalog import workers_for

# The exposure the units must not exceed; docs/design.md has the measurements.
AGENT_MAX = 2.0
WORKER_MAX = 2.5  # 2.3: no file-system protection on the restart path (docs/design.md)

SETTINGS = RenderSettings(version="0.8.1", workers=workers_for("0.8.1"),
                          env_keys=("REDIS_HOST", "API_LICENSE"))


def exposure(unit: Path) -> float:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install Debian's systemd package"
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found[1])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("units")
    for name, text in render(SETTINGS).items():
        (out / name).write_text(text)
    return out


def test_the_agent_is_rated_at_most_2(rendered: Path) -> None:
    assert exposure(rendered / "tracardi-agent.service") <= AGENT_MAX


@pytest.mark.parametrize("name", sorted(
    f"tracardi-{w.name}.service" for w in workers_for("0.8.1")))
def test_every_worker_is_rated_at_most_2_5(rendered: Path, name: str) -> None:
    assert exposure(rendered / name) <= WORKER_MAX


def test_without_its_hardening_the_agent_would_be_unsafe(rendered: Path, tmp_path: Path) -> None:
    # The rating is of the directives, not of something else in the file.
    text = (rendered / "tracardi-agent.service").read_text()
    bare = tmp_path / "tracardi-agent.service"
    bare.write_text(text.split("# Hardening shared")[0] + "\n[Install]\nWantedBy=tracardi.target\n")
    assert exposure(bare) > 9


def test_a_worker_restart_sets_up_no_file_system_sandbox(rendered: Path) -> None:
    """Every file-system protection walks the host's mount table at each exec (issue 24):
    none on a worker unit, and the cleanup runs outside the sandbox altogether."""
    unit = (rendered / "tracardi-scheduler.service").read_text()
    for directive in ("ProtectSystem=", "ProtectHome=", "PrivateDevices=", "PrivateTmp=",
                      "PrivateMounts=", "PrivateIPC=", "ProtectKernelTunables=",
                      "ProtectKernelModules=", "ProtectKernelLogs=", "ProtectControlGroups=",
                      "ProtectProc=", "ProcSubset=", "ReadWritePaths=", "TemporaryFileSystem="):
        assert f"\n{directive}" not in unit, directive
    assert "\nExecStopPost=-+/bin/sh " in unit
