"""The Debian release an e2e session boots, chosen with TRACARDI_E2E_RELEASE.

bookworm (Debian 12, the default) boots the machine's own root, with the tool from the
checkout's .venv (scripts/venv.sh). trixie (Debian 13) boots a root debootstrapped from
Debian's packages by scripts/debian-root (cached under /var/tmp), with the tool from
.venv-trixie: a venv of trixie's Python 3.13 made by chrooting into that root
(scripts/in-root) and installing the checkout editable from PyPI, so the sandbox runs the
checkout's code as bookworm's does. It is made again when pyproject.toml or the root
changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
VARIABLE = "TRACARDI_E2E_RELEASE"
MACHINE_RELEASE = "bookworm"


@dataclass(frozen=True)
class Release:
    name: str
    version: str  # Debian's, as /etc/os-release says it
    systemd: int  # the major version of its systemd
    venv: Path  # the tool's venv, for this release's Python

    @property
    def tool(self) -> str:
        return str(self.venv / "bin" / "tracardi-systemd")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def is_machine(self) -> bool:
        return self.name == MACHINE_RELEASE


RELEASES = {
    "bookworm": Release("bookworm", "12", 252, CHECKOUT / ".venv"),
    "trixie": Release("trixie", "13", 257, CHECKOUT / ".venv-trixie"),
}


class ReleaseError(RuntimeError):
    pass


def selected() -> Release:
    name = os.environ.get(VARIABLE, MACHINE_RELEASE)
    if name not in RELEASES:
        raise ReleaseError(f"{VARIABLE}={name}: not one of {', '.join(RELEASES)}")
    return RELEASES[name]


def prepare(release: Release) -> Path:
    """The root to boot for `release`, its tool's venv ready; builds what is missing."""
    if release.is_machine:
        return Path("/")
    root = Path(_script("debian-root", release.name).strip())
    _make_venv(release, root)
    return root


def _script(name: str, *args: str) -> str:
    result = subprocess.run([str(CHECKOUT / "scripts" / name), *args], capture_output=True,
                            text=True, timeout=1200)
    if result.returncode != 0:
        raise ReleaseError(f"scripts/{name} {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def _make_venv(release: Release, root: Path) -> None:
    stamp = release.venv / "made-for"
    wanted = f"{root}\n{hashlib.sha256((CHECKOUT / 'pyproject.toml').read_bytes()).hexdigest()}\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    shutil.rmtree(release.venv, ignore_errors=True)
    venv, pip = str(release.venv), str(release.venv / "bin" / "pip")
    _script("in-root", str(root), str(CHECKOUT), "--", "sh", "-c",
            'python3 -m venv "$0" && "$1" install --quiet -e "$2"', venv, pip, str(CHECKOUT))
    stamp.write_text(wanted)
