"""The gate a worker restarted by `upgrade` must pass before the next one is restarted.

A worker passes when its unit is active, and one container of the expected image has kept
running for the window without systemd restarting it, and then, if the worker has a
liveness check, that check passes. `Gate.see` is pure: it judges one look at the host at a
time; `watch` looks at the host until every gate has a verdict.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tracardi_systemd.host.commands import (
    CommandError,
    ContainerSource,
    Docker,
    SystemctlClient,
    run,
)
from tracardi_systemd.names import container_name
from tracardi_systemd.observe.model import ContainerState, UnitState
from tracardi_systemd.observe.read import ContainerReader, by_unit, read_units
from tracardi_systemd.spec.catalog import Liveness

POLL_SECONDS = 0.5
LIVENESS_PROBE_SECONDS = 2.0  # between two runs of a liveness check that failed


@dataclass(frozen=True)
class Target:
    """A unit to watch and what it must run."""

    unit: str
    image: str  # the reference its container must run, e.g. tracardi/update-worker:0.8.2
    liveness: Liveness | None = None
    image_id: str = ""  # when set, the image it must run (a rollback: the one it ran before)


@dataclass(frozen=True)
class GateTimes:
    window: float  # seconds one container must keep running
    start_timeout: float  # seconds after the restart by which it must be running at all
    liveness_timeout: float | None = None  # after the window; None: the check's start period


@dataclass(frozen=True)
class Verdict:
    unit: str
    passed: bool
    reason: str = ""  # why it failed, worded for the operator


def seconds(duration: str) -> float:
    """Docker's and the catalog's durations: 90, 90s, 2m, 1h."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", duration.strip())
    if not match:
        raise ValueError(f"{duration!r} is not a duration")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match[2] or "s"]
    return float(match[1]) * scale


class Gate:
    """The verdict on one restarted unit, from looks at its unit and container."""

    def __init__(self, target: Target, times: GateTimes, started: float, restarts: int):
        self.target = target
        self.times = times
        self.started = started
        self.restarts = restarts  # systemd's NRestarts right after our restart
        self.container_id = ""
        self.running_since: float | None = None
        self.verdict: Verdict | None = None
        self.liveness_deadline: float | None = None
        self.liveness_allowed = 0.0

    @property
    def waits_for_liveness(self) -> bool:
        return self.verdict is None and self.liveness_deadline is not None

    def see(self, unit: UnitState, container: ContainerState | None, now: float) -> None:
        """Judge one look; sets `verdict` once there is one."""
        if self.verdict is not None:
            return
        problem = self._problem(unit, container, now)
        if problem:
            self._fail(problem)
            return
        if self.running_since is None or now - self.running_since < self.times.window:
            return
        check = self.target.liveness
        if check is None:
            self.verdict = Verdict(self.target.unit, True)
        elif container is not None and container.live is not None:
            if container.live:
                self.verdict = Verdict(self.target.unit, True)
            else:
                self._fail(f"its liveness check fails: {check.why}")
        elif self.liveness_deadline is None:
            allowed = self.times.liveness_timeout
            self.liveness_allowed = seconds(check.start_period) if allowed is None else allowed
            self.liveness_deadline = now + self.liveness_allowed

    def probed(self, passed: bool, now: float) -> None:
        """The result of running the liveness check once."""
        if not self.waits_for_liveness:
            return
        assert self.target.liveness is not None and self.liveness_deadline is not None
        if passed:
            self.verdict = Verdict(self.target.unit, True)
        elif now >= self.liveness_deadline:
            self._fail(f"its liveness check did not pass within "
                       f"{_secs(self.liveness_allowed)} ({self.target.liveness.why})")

    def _problem(self, unit: UnitState, container: ContainerState | None,
                 now: float) -> str:
        if unit.restarts > self.restarts:
            return (f"crash-looping: systemd restarted it {unit.restarts - self.restarts} "
                    "time(s) after the upgrade started it")
        if unit.active_state in ("failed", "inactive"):
            return f"its unit is {unit.active_state} ({unit.result or 'stopped'})"
        ours = (container is not None and container.running
                and container.image == self.target.image
                and self.target.image_id in ("", container.image_id))
        if ours and unit.active_state == "active":
            assert container is not None
            if not self.container_id:
                self.container_id, self.running_since = container.id, now
            elif container.id != self.container_id:
                return "crash-looping: its container exited and was started again"
            return ""
        if self.container_id:
            return (f"its container stopped running after {_secs(now - self.running_since)}"
                    if self.running_since is not None else "its container stopped running")
        if now - self.started > self.times.start_timeout:
            seen = (f"container {container.status} on {container.image}" if container
                    else "no container")
            return (f"not running {_secs(self.times.start_timeout)} after its restart "
                    f"(unit {unit.active_state}/{unit.sub_state}, {seen})")
        return ""

    def _fail(self, reason: str) -> None:
        self.verdict = Verdict(self.target.unit, False, reason)


def _secs(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


Probe = Callable[[Target], bool]


def liveness_probe(docker: Docker) -> Probe:
    """Runs a worker's liveness check inside its container now, as Docker's health check
    would (`/bin/sh -c`): Docker's first scheduled check comes only after its interval."""

    def probe(target: Target) -> bool:
        assert target.liveness is not None
        argv = [docker.program, "exec", container_name(target.unit), "/bin/sh", "-c",
                target.liveness.command]
        try:
            run(argv, timeout=seconds(target.liveness.timeout))
        except CommandError:
            return False
        return True

    return probe


def watch(gates: Sequence[Gate], systemctl: SystemctlClient, engine: ContainerSource,
          probe: Probe,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> list[Verdict]:
    """Look at the host until every gate has its verdict; the verdicts in gate order."""
    units = [g.target.unit for g in gates]
    next_probe: dict[str, float] = {}
    reader = ContainerReader(engine)
    while True:
        shown, containers = read_units(systemctl, units), by_unit(reader.read())
        now = clock()
        for gate in gates:
            gate.see(shown[gate.target.unit], containers.get(gate.target.unit), now)
            if gate.waits_for_liveness and now >= next_probe.get(gate.target.unit, now):
                gate.probed(probe(gate.target), clock())
                next_probe[gate.target.unit] = clock() + LIVENESS_PROBE_SECONDS
        if all(g.verdict is not None for g in gates):
            return [g.verdict for g in gates if g.verdict is not None]
        sleep(POLL_SECONDS)
