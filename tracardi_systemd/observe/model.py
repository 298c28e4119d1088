"""What the host said about the managed workers, as plain values.

Free of psutil and subprocess: the policy and its tests import these types alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracardi_systemd.names import container_name

GOING_DOWN = ("stop", "restart", "try-restart", "reload-or-restart")  # systemd's job types


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
    job: str = ""  # the job queued for it (stop, restart, reload, ...); "" when none

    @property
    def up(self) -> bool:
        """Active and staying so: no stop or restart queued. (A stop of docker.service
        waits for the workers that require it, so it stays `active` for seconds after
        `systemctl stop docker`; a connection then would start it again through
        docker.socket.)"""
        return self.active_state == "active" and self.job not in GOING_DOWN

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
    network: str = ""  # HostConfig.NetworkMode: "host" shares the host's network namespace
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



@dataclass(frozen=True)
class QueueReading:
    waiting: int  # LLEN: messages waiting in the list
    oldest: str  # a digest of the oldest waiting message; "" when none waits


def queue_key(redis: str, queue: str) -> str:
    """How a queue is known across ticks: "127.0.0.1:6379 celery"."""
    return f"{redis} {queue}"


@dataclass(frozen=True)
class WorkReading:
    """What Redis shows of one worker taking work (observe/work.py), read once per tick."""

    redis: str  # "127.0.0.1:6379": where its queues are
    queues: dict[str, QueueReading]
    # Seconds since its freshest consuming connection issued the consuming command (0 while
    # blocked in it); None when it holds none.
    consuming_idle: int | None
    broadcast: bool  # it holds a broadcast subscription (Celery's pidbox answers pings)
    reserved: int  # delivered, unacknowledged messages on that Redis (every consumer's)
    shared: bool = False  # on the host's network: the host's connections, not its own alone

    def queue_keys(self) -> list[str]:
        return [queue_key(self.redis, queue) for queue in self.queues]
