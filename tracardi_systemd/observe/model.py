"""What the host said about the managed workers, as plain values.

Free of psutil and subprocess: the policy and its tests import these types alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracardi_systemd.names import container_name


@dataclass(frozen=True)
class UnitState:
    name: str
    active_state: str
    sub_state: str
    result: str
    restarts: int
    active_since_usec: int  # CLOCK_MONOTONIC, microseconds; 0 when never active
    inactive_since_usec: int = 0  # when it last became inactive (CLOCK_MONOTONIC, µs)
    deactivated_usec: int = 0  # when it last left the active state (CLOCK_MONOTONIC, µs)

    @property
    def start_limit_hit(self) -> bool:
        return self.active_state == "failed" and self.result == "start-limit-hit"


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    unit: str
    worker: str
    status: str  # docker's State.Status: running, exited, created, ...
    pid: int
    started_at: str
    image: str
    health: str = ""  # Docker's health status: "", starting, healthy, unhealthy
    image_id: str = ""  # the image it runs, sha256:..., whatever its tag names now

    @property
    def live(self) -> bool | None:
        """What the worker's liveness check says; None while there is no verdict."""
        return {"healthy": True, "unhealthy": False}.get(self.health)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def is_units_own(self) -> bool:
        """Started by its unit (named as the unit names it), not by hand with its label."""
        return self.name == container_name(self.unit)

