"""Shared fixtures of the fast unit tests (no root, no network, no Docker engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

WriteEnv = Callable[..., Path]


@pytest.fixture
def write_env(tmp_path: Path) -> WriteEnv:
    """Write an env file into tmp_path (text or bytes, mode 0600 unless told) and return it."""

    def write(content: str | bytes, name: str = ".env-docker", mode: int = 0o600) -> Path:
        path = tmp_path / name
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        os.chmod(path, mode)
        return path

    return write


@pytest.fixture(scope="session")
def tool_path() -> str:
    """An executable that exists, for the agent unit's ExecStart (verify checks it)."""
    beside_python = Path(sys.executable).with_name("tracardi-systemd")
    found = str(beside_python) if beside_python.exists() else shutil.which("tracardi-systemd")
    assert found, "tracardi-systemd is not installed in this environment"
    return found


def systemd_verify(files: dict[str, str], directory: Path) -> None:
    """Write the unit files into `directory` and assert `systemd-analyze verify` is silent."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install Debian's systemd package"
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        paths.append(str(path))
    result = subprocess.run(
        [analyze, "verify", *paths], capture_output=True, text=True, cwd=directory, timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


@pytest.fixture(scope="session")
def verify() -> Callable[[dict[str, str], Path], None]:
    return systemd_verify


@pytest.fixture
def installed(tmp_path: Path, write_env: WriteEnv) -> tuple[Path, Path]:
    """An offline root with everything installed from CLEAN_ENV: (root, env file)."""
    from offline import invoke
    from samples import CLEAN_ENV

    root = tmp_path / "root"
    env = write_env(CLEAN_ENV)
    result = invoke("install", "--root", str(root), "--env-file", str(env))
    assert result.exit_code == 0, result.output
    return root, env
