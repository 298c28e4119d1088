"""The worker catalog: which Tracardi workers exist in which release.

This is data, keyed by Tracardi version. A new release's workers are new rows in
CATALOG, not new code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tracardi_systemd import names

CORE_SETTINGS = ("ELASTIC_HOST", "REDIS_HOST", "LOGGING_LEVEL")

RedisPortSource = Literal["REDIS_PORT", "REDIS_HOST"]


@dataclass(frozen=True)
class Worker:
    name: str
    image: str
    description: str
    needs: tuple[str, ...]
    commercial: bool
    # Where the worker reads the Redis port from: core config takes it from REDIS_PORT
    # only; the 0.8.1 update-worker needs it inside REDIS_HOST ("host:port").
    redis_port_from: RedisPortSource = "REDIS_PORT"

    @property
    def unit_base(self) -> str:
        return names.unit_base(self.name)

    def describe(self) -> dict[str, object]:
        """The worker as `workers --json` prints it."""
        return {"name": self.name, "unit": f"{self.unit_base}.service", "image": self.image,
                "description": self.description, "needs": list(self.needs),
                "commercial": self.commercial}

    @property
    def needs_redis(self) -> bool:
        return "REDIS_HOST" in self.needs

    @property
    def needs_elastic(self) -> bool:
        return "ELASTIC_HOST" in self.needs


CATALOG: dict[str, tuple[Worker, ...]] = {
    "0.8.1": (
        Worker(
            name="update",
            image="tracardi/update-worker",
            description="Tracardi update worker",
            needs=("REDIS_HOST",),
            commercial=False,
            redis_port_from="REDIS_HOST",
        ),
        Worker(
            name="segmentation",
            image="tracardi/com-tracardi-segmentation-worker",
            description="Tracardi segmentation worker",
            needs=CORE_SETTINGS,
            commercial=True,
        ),
        Worker(
            name="scheduler",
            image="tracardi/com-tracardi-scheduler-worker",
            description="Tracardi scheduler worker",
            needs=CORE_SETTINGS,
            commercial=True,
        ),
        Worker(
            name="post-collection",
            image="tracardi/com-tracardi-coping-worker",
            description="Tracardi post-collection (coping) worker",
            needs=CORE_SETTINGS,
            commercial=True,
        ),
        Worker(
            name="trigger",
            image="tracardi/com-tracardi-trigger-worker",
            description="Tracardi trigger worker",
            needs=CORE_SETTINGS,
            commercial=True,
        ),
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
