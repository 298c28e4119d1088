"""The worker catalog: which Tracardi workers exist in which release, and how each reads
its settings, what it depends on, how to tell it works, and what heals it.

This is data, keyed by Tracardi version. A new release's workers are new rows in CATALOG,
not new code: validation, rendering and the agent all read these rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tracardi_systemd import names

REDIS, ELASTICSEARCH, MYSQL, PULSAR = "redis", "elasticsearch", "mysql", "pulsar"

RedisPortSource = Literal["REDIS_PORT", "REDIS_HOST"]


@dataclass(frozen=True)
class RedisReading:
    """How a worker reads REDIS_HOST (Tracardi's releases differ)."""

    # Core config strips the scheme, drops anything after ':' and takes the port from
    # REDIS_PORT; the 0.8.x update worker takes the port only from inside REDIS_HOST.
    port_from: RedisPortSource
    # What the worker does with rediss://, for the message that refuses it.
    on_rediss: str


CORE_REDIS = RedisReading(
    "REDIS_PORT", "strips the scheme and connects in plain TCP without TLS")
CELERY_UPDATE_REDIS = RedisReading(
    "REDIS_HOST", "crashes at start (it cannot parse the port after rediss://)")


@dataclass(frozen=True)
class Liveness:
    """A check that proves a worker consumes work, run by Docker's health check inside the
    container; after `retries` failures in a row Docker marks it unhealthy and the agent
    restarts its unit. The command is a shell line; $HOSTNAME is the container's name."""

    command: str
    why: str  # what a failure means, for the journal
    interval: str = "60s"
    timeout: str = "30s"
    retries: int = 3
    start_period: str = "120s"


# The 0.8.1 update worker is a Celery 5.2.6 app. After a Redis outage of ~40 s it reconnects
# and never takes a task again (a Celery 5.2 bug), while its container runs: a ping to its
# own node name goes unanswered then, and answers while it consumes.
CELERY_PING = Liveness(
    command="celery -A tracardi.worker.celery_worker inspect ping "
            "-d celery@$HOSTNAME --timeout 10 >/dev/null",
    why="its Celery node answers no ping: it has stopped consuming tasks",
)


@dataclass(frozen=True)
class Worker:
    name: str
    image: str
    description: str
    settings: tuple[str, ...]  # the settings it needs (the license apart)
    dependencies: tuple[str, ...]  # the services it needs reachable: REDIS, ELASTICSEARCH...
    commercial: bool
    redis: RedisReading = CORE_REDIS
    # False: after an outage of a dependency it stays broken until restarted (0.8.1's
    # workers, Celery above all); the agent restarts it once the dependency is back.
    recovers_after_outage: bool = False
    liveness: Liveness | None = None
    environment: dict[str, str] = field(default_factory=dict)  # fixed settings of the unit

    @property
    def unit_base(self) -> str:
        return names.unit_base(self.name)

    def needs(self, dependency: str) -> bool:
        return dependency in self.dependencies

    def describe(self) -> dict[str, object]:
        """The worker as `workers --json` prints it."""
        return {"name": self.name, "unit": f"{self.unit_base}.service", "image": self.image,
                "description": self.description, "settings": list(self.settings),
                "dependencies": list(self.dependencies), "commercial": self.commercial,
                "liveness": self.liveness.command if self.liveness else None}


CORE_SETTINGS = ("ELASTIC_HOST", "REDIS_HOST")
CORE_DEPENDENCIES = (REDIS, ELASTICSEARCH)


def _core_081(name: str, image: str, description: str) -> Worker:
    return Worker(name=name, image=image, description=description, settings=CORE_SETTINGS,
                  dependencies=CORE_DEPENDENCIES, commercial=True)


CATALOG: dict[str, tuple[Worker, ...]] = {
    "0.8.1": (
        Worker(
            name="update",
            image="tracardi/update-worker",
            description="Tracardi update worker",
            settings=("REDIS_HOST",),
            dependencies=(REDIS,),
            commercial=False,
            redis=CELERY_UPDATE_REDIS,
            liveness=CELERY_PING,
        ),
        _core_081("segmentation", "tracardi/com-tracardi-segmentation-worker",
                  "Tracardi segmentation worker"),
        _core_081("scheduler", "tracardi/com-tracardi-scheduler-worker",
                  "Tracardi scheduler worker"),
        _core_081("post-collection", "tracardi/com-tracardi-coping-worker",
                  "Tracardi post-collection (coping) worker"),
        _core_081("trigger", "tracardi/com-tracardi-trigger-worker", "Tracardi trigger worker"),
    ),
}

DEFAULT_VERSION = "0.8.1"


class CatalogError(ValueError):
    """A version or worker name that the catalog does not know."""


def workers_for(version: str) -> tuple[Worker, ...]:
    try:
        return CATALOG[version]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise CatalogError(
            f"Tracardi version {version!r} is not in the catalog (known: {known})"
        ) from None


def select_workers(version: str, wanted: tuple[str, ...] | list[str] = ()) -> tuple[Worker, ...]:
    """The named workers of a version, in catalog order; all of them when no name is given."""
    workers = workers_for(version)
    if not wanted or tuple(wanted) == ("all",):
        return workers
    by_name = {w.name: w for w in workers}
    short = {names.worker_name(given) for given in wanted}
    for given in wanted:
        if names.worker_name(given) not in by_name:
            known = ", ".join(by_name)
            raise CatalogError(
                f"unknown worker {given!r} for Tracardi {version} (known: {known})"
            )
    return tuple(w for w in workers if w.name in short)
