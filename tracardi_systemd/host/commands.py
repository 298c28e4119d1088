"""Adapters for the host: `systemctl` and the `docker` client, and nothing else.

Policy code takes these as parameters, so tests can hand it fakes; these classes stay thin
wrappers that build an argv and parse what comes back.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

SYSTEMD_RUNNING_MARKER = Path("/run/systemd/system")
# By path, not by a $PATH lookup: root runs it. Debian and the RHEL family both ship it here.
SYSTEMCTL = "/usr/bin/systemctl"
# A pull has no fixed kill (a slow link must be able to finish); this is only the default
# of `upgrade --pull-timeout`.
PULL_TIMEOUT = 1800.0


class SystemctlClient(Protocol):
    """What the agent, `status` and the installer ask of systemd."""

    def __call__(self, *args: str) -> str: ...

    def show(self, units: Sequence[str],
             properties: Sequence[str]) -> dict[str, dict[str, str]]: ...

    def states(self, units: Sequence[str]) -> dict[str, tuple[str, str, str]]: ...

    def jobs(self) -> dict[str, str]: ...


class ContainerSource(Protocol):
    """What the agent and `status` ask of Docker: its Engine API (engine.Engine)."""

    def containers(self, label: str, all: bool = True) -> list[dict]: ...

    def inspect(self, container: str) -> dict: ...

    def remove(self, container: str, force: bool = True) -> bool: ...


class CommandError(Exception):
    """A host command failed; the message says which and what it printed."""


def run(argv: Sequence[str], *, input: str | None = None, capture: bool = True,
        timeout: float = 120, check: bool = True) -> str:
    try:
        result = subprocess.run(
            list(argv), input=input, text=True, timeout=timeout, check=False,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
    except FileNotFoundError:
        raise CommandError(f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"{' '.join(argv[:3])} did not finish in {timeout:.0f} s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()
        raise CommandError(
            f"{' '.join(argv[:4])} failed (exit status {result.returncode})"
            + (f": {detail}" if detail else "")
        )
    return result.stdout or ""


def stream(argv: Sequence[str], on_line: Callable[[str], None],
           timeout: float | None = None) -> None:
    """Run `argv`, handing each line it prints (stdout and stderr) to `on_line` as it
    comes; CommandError with its last lines when it fails or outlasts `timeout`."""
    try:
        process = subprocess.Popen(list(argv), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
    except FileNotFoundError:
        raise CommandError(f"{argv[0]} not found") from None
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(timeout, kill) if timeout else None
    tail: deque[str] = deque(maxlen=3)
    try:
        if timer:
            timer.start()
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip())
            on_line(tail[-1])
        process.wait()
    finally:
        if timer:
            timer.cancel()
        if process.poll() is None:  # interrupted: take the child along
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
    what = " ".join(argv[:3])
    if expired.is_set():
        raise CommandError(f"{what} did not finish in {timeout:.0f} s")
    if process.returncode != 0:
        detail = "; ".join(tail)
        raise CommandError(f"{what} failed (exit status {process.returncode})"
                           + (f": {detail}" if detail else ""))


def systemd_is_running() -> bool:
    return SYSTEMD_RUNNING_MARKER.is_dir()


class Systemctl:
    """`systemctl`, against the live system or, with `root`, an offline root directory."""

    def __init__(self, root: Path | None = None, program: str = SYSTEMCTL,
                 timeout: float = 120):
        self.argv = [program] + ([f"--root={root}"] if root else [])
        self.offline = root is not None
        self.timeout = timeout

    def __call__(self, *args: str) -> str:
        return run([*self.argv, *args], timeout=self.timeout)

    def daemon_reload(self) -> None:
        if not self.offline:
            self("daemon-reload")

    def enable(self, units: Iterable[str]) -> None:
        self("enable", "--quiet", *units)

    def disable(self, units: Iterable[str], now: bool = False) -> None:
        self("disable", "--quiet", *(["--now"] if now and not self.offline else []), *units)

    def start(self, units: Iterable[str]) -> None:
        self("start", *units)

    def show(self, units: Sequence[str], properties: Sequence[str]) -> dict[str, dict[str, str]]:
        """Properties of many units with one call: {unit: {property: value}}."""
        if not units:
            return {}
        output = self("show", "--property", ",".join(["Id", *properties]), "--", *units)
        return parse_show(output)

    def states(self, units: Sequence[str]) -> dict[str, tuple[str, str, str]]:
        """{unit: (load, active, sub)} of the units systemd has loaded, with one cheap call
        (`show` makes systemd gather every property of every unit it names)."""
        if not units:
            return {}
        output = self("list-units", "--all", "--plain", "--no-legend", "--full", "--", *units)
        return {fields[0]: (fields[1], fields[2], fields[3]) for line in output.splitlines()
                if len(fields := line.split(None, 4)) >= 4}

    def jobs(self) -> dict[str, str]:
        """{unit: type} of the jobs systemd has queued or running (`list-jobs`: usually
        none, one cheap call)."""
        output = self("list-jobs", "--no-legend", "--full")
        return {fields[1]: fields[2] for line in output.splitlines()
                if len(fields := line.split()) >= 4 and fields[0].isdigit()}


def parse_show(output: str) -> dict[str, dict[str, str]]:
    """`systemctl show` prints one blank-line separated block of NAME=value per unit."""
    result = {}
    for block in output.strip("\n").split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            result[props["Id"]] = props
    return result


# When install and upgrade pull the worker images (--pull).
PULL_POLICIES = ("always", "missing", "never")


class Docker:
    """The docker client, for what only it does well: pull and login."""

    def __init__(self, program: str = "/usr/bin/docker", timeout: float = 120):
        self.program = program
        self.timeout = timeout

    def __call__(self, *args: str, input: str | None = None, capture: bool = True) -> str:
        return run([self.program, *args], input=input, capture=capture, timeout=self.timeout)

    def pull(self, image: str, timeout: float | None = PULL_TIMEOUT,
             on_line: Callable[[str], None] | None = None) -> None:
        """`docker pull`, its progress to `on_line` (default: stderr, so that stdout
        stays free for --json)."""
        stream([self.program, "pull", image], on_line or _to_stderr, timeout)

    def has_image(self, image: str) -> bool:
        try:
            self("image", "inspect", "--format", "{{.Id}}", image)
        except CommandError:
            return False
        return True

    def login(self, registry: str | None, username: str, token: str) -> str:
        args = ["login", "--username", username, "--password-stdin"]
        return self(*args, *([registry] if registry else []), input=token)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
