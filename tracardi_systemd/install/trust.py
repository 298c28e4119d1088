"""Whether root may run a program: owned by root and writable by no one else, all the way up.

The agent unit runs as root. If its program, the interpreter in its `#!` line, the Python
package it loads or the templates that shaped the unit files sit where another user can
write, that user's edits become root's code. Install refuses such a program and says how
to get a root-owned one.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import tracardi_systemd


def untrusted(path: Path) -> str | None:
    """Why root should not run or read `path`, or None when it is safe."""
    for candidate in (path, Path(os.path.realpath(path))):
        reason = _chain_problem(candidate)
        if reason:
            return reason
    return None


def _chain_problem(path: Path) -> str | None:
    for part in [path, *path.parents]:
        try:
            info = os.lstat(part)
        except OSError as exc:
            return f"{part} cannot be checked ({exc.strerror})"
        if stat.S_ISLNK(info.st_mode):
            continue  # the link's folder is checked; its target is checked as realpath
        if info.st_uid != 0:
            return f"{part} is owned by uid {info.st_uid}, not root"
        writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        sticky_folder = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
        if writable_by_others and not (sticky_folder and part != path):
            return f"{part} is writable by users other than root (mode {info.st_mode & 0o7777:04o})"
    return None


def interpreter_of(program: Path) -> Path | None:
    """The interpreter named in a script's `#!` line, if it has one."""
    try:
        with open(program, "rb") as handle:
            first = handle.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return Path(words[0]) if words else None


def package_files() -> list[Path]:
    """Every folder and file of this package, subpackages and templates included: all of it
    is code or input that root's agent loads."""
    package = Path(tracardi_systemd.__file__).parent
    return [package, *sorted(package.rglob("*"))]


def program_problem(program: Path) -> str | None:
    """Why root must not run `program` (the docker or podman client of the worker units):
    the program itself, or the interpreter of its `#!` line."""
    interpreter = interpreter_of(program)
    for path in [program, *([interpreter] if interpreter else [])]:
        reason = untrusted(path)
        if reason:
            return reason
    return None


def agent_program_problem(program: Path) -> str | None:
    """Why the agent unit must not run `program` as root; None when it may."""
    reason = program_problem(program)
    if reason:
        return reason
    for path in [*package_files(), Path(sys.prefix)]:
        reason = untrusted(path)
        if reason:
            return reason
    return None
