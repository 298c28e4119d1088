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
# One ping starts Python and Celery in the container: 0.33-0.38 s of CPU (measured on the
# real 0.8.1 worker). Every 5 minutes that is about 0.1 % of a core per worker. The agent's
# work-based liveness (CELERY_WORK) sees this hang and its ping-answering variant within a
# minute: Docker units render the ping only when asked (render/units.py).
CELERY_PING = Liveness(
    command="celery -A tracardi.worker.celery_worker inspect ping "
            "-d celery@$HOSTNAME --timeout 10 >/dev/null",
    why="its Celery node answers no ping: it has stopped consuming tasks",
    interval="300s",
    retries=2,
)


@dataclass(frozen=True)
class RedisWork:
    """How a worker takes its work from Redis, so the agent can see from Redis alone whether
    it does (docs/design.md, "Work-based liveness"): the lists it pops, the command a
    consumer blocks in while it asks for work, whether it also holds a broadcast
    subscription, and where delivered but unacknowledged messages are kept."""

    queues: tuple[str, ...]
    consume: str = "brpop"  # CLIENT LIST's cmd= of a connection asking for work
    broadcast: bool = True  # a PSUBSCRIBE connection (Celery's pidbox: ping, control)
    reserved: str = "unacked_index"  # a sorted set of delivered, unacknowledged messages


# Celery 5.2 on kombu's Redis transport: tasks LPUSHed to the list `celery`, taken with BRPOP
# (1 s timeout, re-issued while the worker has prefetch room); the pidbox is a PSUBSCRIBE;
# a message taken but not acknowledged sits in `unacked` and `unacked_index` (kombu QoS).
CELERY_WORK = RedisWork(queues=("celery",))


Kind = Literal["service", "run-once", "scheduled"]


@dataclass(frozen=True)
class Schedule:
    """When a scheduled job runs: the schedule of the CronJob in Tracardi's chart, and the
    same in systemd's calendar syntax."""

    cron: str
    on_calendar: str
    # The chart gives a run a deadline of 60 to 120 s to start (startingDeadlineSeconds);
    # within it, a random delay keeps several timers from starting at the same second.
    randomized_delay: str = "60s"
    # A run still going after this is taken as hung and stopped, so the next can start.
    timeout: str = "1h"


def every(minutes: int) -> Schedule:
    """`*/N * * * *`: every N minutes, from the full hour."""
    return Schedule(cron=f"*/{minutes} * * * *", on_calendar=f"*:00/{minutes}")


# Unless the catalog knows better, a worker is taken to stay broken after an outage: a
# needless restart costs seconds, a worker left hung loses every task.
RECOVERS_AFTER_OUTAGE = False


@dataclass(frozen=True)
class Worker:
    """One entry of a release: an image in one role. Most are long-running workers (kind
    "service"); Tracardi's `init` runs once before the commercial workers ("run-once"), and
    the jobs its charts run as CronJobs run on a timer ("scheduled")."""

    name: str
    image: str
    description: str
    required_settings: tuple[str, ...]  # the settings it needs (the license apart)
    dependencies: tuple[str, ...]  # the services it needs reachable: REDIS, ELASTICSEARCH...
    commercial: bool
    redis: RedisReading = CORE_REDIS
    # False: after an outage of a dependency it stays broken until restarted (0.8.1's
    # workers, Celery above all); the agent restarts it once the dependency is back.
    recovers_after_outage: bool = RECOVERS_AFTER_OUTAGE
    liveness: Liveness | None = None
    # How it consumes a Redis queue; None: nothing is known of it (status says "unknown").
    work: RedisWork | None = None
    # Fixed settings of the unit (a role's CONSUMER_TYPE), passed as -e NAME=value.
    environment: dict[str, str] = field(default_factory=dict)
    # Settings the charts give this worker, which the env file (or --set) may override.
    defaults: dict[str, str] = field(default_factory=dict)
    kind: Kind = "service"
    schedule: Schedule | None = None  # when kind is "scheduled"
    requires: tuple[str, ...] = ()  # entries that must have run before it starts (init)
    default: bool = True  # selected when no --worker is given: the chart enables it
    # The chart's memory limit where it is above the agent's default (2048 MiB).
    memory_limit_mib: int | None = None

    @property
    def unit_base(self) -> str:
        return names.unit_base(self.name)

    @property
    def unit(self) -> str:
        """The unit an operator starts: a scheduled job's timer, else its service."""
        if self.kind == "scheduled":
            return names.timer_file(self.name)
        return names.unit_file(self.name, template=False)

    def needs(self, dependency: str) -> bool:
        return dependency in self.dependencies

    def describe(self) -> dict[str, object]:
        """The worker as `workers --json` prints it."""
        return {"name": self.name, "unit": self.unit, "kind": self.kind,
                "image": self.image, "description": self.description,
                "settings": list(self.required_settings), "dependencies": list(self.dependencies),
                "commercial": self.commercial,
                "liveness": self.liveness.command if self.liveness else None,
                "work": ({"queues": list(self.work.queues), "consume": self.work.consume}
                         if self.work else "unknown"),
                "environment": dict(self.environment), "defaults": dict(self.defaults),
                "schedule": self.schedule.cron if self.schedule else None,
                "requires": list(self.requires), "default": self.default}


@dataclass(frozen=True)
class Release:
    image_tag: str  # the tag Tracardi's charts give this release's images
    workers: tuple[Worker, ...]


CORE_SETTINGS = ("ELASTIC_HOST", "REDIS_HOST")
CORE_DEPENDENCIES = (REDIS, ELASTICSEARCH)
PULSAR_DEPENDENCIES = (REDIS, ELASTICSEARCH, PULSAR)
# 0.9 to 1.2: configuration in MySQL, queues in Pulsar (PULSAR_API is its admin URL).
BACKGROUND_SETTINGS = ("ELASTIC_HOST", "REDIS_HOST", "MYSQL_HOST", "PULSAR_HOST", "PULSAR_API")
BACKGROUND_DEPENDENCIES = (REDIS, ELASTICSEARCH, MYSQL, PULSAR)
INIT = "init"


def _core(name: str, image: str, description: str, **more: object) -> Worker:
    """A commercial entry; it needs Elasticsearch and Redis unless `more` says otherwise."""
    fields = {"required_settings": CORE_SETTINGS, "dependencies": CORE_DEPENDENCIES} | more
    return Worker(name=name, image=image, description=description, commercial=True,
                  **fields)  # type: ignore[arg-type]


def _roles(name: str, image: str, description: str, roles: tuple[str, ...],
           **more: object) -> tuple[Worker, ...]:
    """One 0.8.2 image in several roles, a unit each, CONSUMER_TYPE=<role> set by the unit."""
    return tuple(_core(f"{name}-{role}", image, f"{description} ({role})",
                       environment={"CONSUMER_TYPE": role}, **more) for role in roles)


def _job(name: str, image: str, description: str, schedule: Schedule,
         **more: object) -> Worker:
    return _core(name, image, description, kind="scheduled", schedule=schedule, **more)


# The 0.8.x update worker: Celery 5.2.6, Redis only, its port inside REDIS_HOST.
CELERY_UPDATE_WORKER = Worker(
    name="update",
    image="tracardi/update-worker",
    description="Tracardi update worker",
    required_settings=("REDIS_HOST",),
    dependencies=(REDIS,),
    commercial=False,
    redis=CELERY_UPDATE_REDIS,
    liveness=CELERY_PING,
    work=CELERY_WORK,
)

# The heartbeat job of Helm 0.8.1: one CronJob per schedule entry, production data.
_HEARTBEAT = {"RANGE": "now-1M|now", "PRODUCTION": "yes"}
HEARTBEAT_JOBS_081 = (
    _job("heartbeat-profile-segmentation", "tracardi/com-heartbeat-job",
         "Tracardi heartbeat job (profile segmentation)", every(30),
         environment=_HEARTBEAT | {"QUALIFY_BY": "profile-segmentation",
                                   "NO_EVENTS_WITHIN_LAST": "20m"}),
    _job("heartbeat-visit-end", "tracardi/com-heartbeat-job",
         "Tracardi heartbeat job (visit end)", every(20),
         environment=_HEARTBEAT | {"QUALIFY_BY": "visit-end", "SKIP_SECONDS": "900",
                                   "OPEN_EVENT_TYPE": "visit-started",
                                   "CLOSE_EVENT_TYPE": "visit-ended", "EPHEMERAL": "no"}),
)

RELEASE_081 = Release("0.8.1", (
    CELERY_UPDATE_WORKER,
    _core("segmentation", "tracardi/com-tracardi-segmentation-worker",
          "Tracardi segmentation worker"),
    _core("scheduler", "tracardi/com-tracardi-scheduler-worker", "Tracardi scheduler worker"),
    _core("post-collection", "tracardi/com-tracardi-coping-worker",
          "Tracardi post-collection (coping) worker"),
    _core("trigger", "tracardi/com-tracardi-trigger-worker", "Tracardi trigger worker"),
    *HEARTBEAT_JOBS_081,
))

# Helm 0.8.2 (images 0.8.2.1): workers under workers/pulsar consume from Pulsar, the
# flushers (workers/redis) move Redis buffers to Elasticsearch.
_ON_PULSAR = {"required_settings": (*CORE_SETTINGS, "PULSAR_HOST"),
              "dependencies": PULSAR_DEPENDENCIES}


def _apm(pause: str, memory_limit_mib: int | None = None) -> Worker:
    """Automatic profile merging, open source: MODE=worker, a pass every PAUSE seconds."""
    return Worker(name="apm", image="tracardi/apm", description="Tracardi APM worker",
                  required_settings=CORE_SETTINGS, dependencies=CORE_DEPENDENCIES, commercial=False,
                  environment={"MODE": "worker"}, defaults={"PAUSE": pause},
                  memory_limit_mib=memory_limit_mib)


RELEASE_082 = Release("0.8.2.1", (
    CELERY_UPDATE_WORKER,
    _core("segmentation", "tracardi/com-tracardi-segmentation-worker",
          "Tracardi segmentation worker"),
    _core("post-collection", "tracardi/com-tracardi-coping-worker",
          "Tracardi post-collection (coping) worker"),
    _core("scheduler", "tracardi/com-tracardi-scheduler-worker", "Tracardi scheduler worker",
          **_ON_PULSAR),
    *_roles("flusher", "tracardi/com-tracardi-flusher-worker", "Tracardi flusher worker",
            ("profile", "session")),
    *_roles("storage", "tracardi/com-tracardi-storage-worker", "Tracardi storage worker",
            ("event", "profile", "session"),
            **_ON_PULSAR,
            defaults={"PULSAR_COLLECTOR_POOL": "500"}),
    _core("workflow", "tracardi/com-tracardi-workflow-worker", "Tracardi workflow worker",
          **_ON_PULSAR,
          environment={"CONSUMER_TYPE": "event"}),
    *_roles("outbound", "tracardi/com-tracardi-outbound-worker", "Tracardi outbound worker",
            ("profile", "event"),
            **_ON_PULSAR),
    _core("metrics", "tracardi/com-tracardi-metrics-worker", "Tracardi metrics worker",
          **_ON_PULSAR),
    _core("visit-end-checker", "tracardi/com-tracardi-visit-end-checker-worker",
          "Tracardi visit end checker worker",
          **_ON_PULSAR,
          defaults={"DEFAULT_RESCHEDULING_TIME": "1200", "CLOSE_VISIT_AFTER": "2100"}),
    _core("visit-ended", "tracardi/com-tracardi-visit-ended-worker",
          "Tracardi visit ended worker",
          **_ON_PULSAR),
    _apm(pause="15"),
    _job("metrics-job", "tracardi/com-metrics-job", "Tracardi metrics job", every(30)),
    _job("cond-segmentation-job", "tracardi/com-cond-segmentation-job",
         "Tracardi conditional segmentation job", every(10)),
    _job("wf-segmentation-job", "tracardi/com-wf-segmentation-job",
         "Tracardi workflow segmentation job", every(15), default=False),
))


# 0.9.0 to 1.2.x (Argo CD charts): every commercial container after `init`.
_AFTER_INIT = {"required_settings": BACKGROUND_SETTINGS, "dependencies": BACKGROUND_DEPENDENCIES,
               "requires": (INIT,)}
INIT_09 = _core(INIT, "tracardi/init", "Tracardi init (installs or upgrades the system)",
                kind="run-once", required_settings=BACKGROUND_SETTINGS,
                dependencies=BACKGROUND_DEPENDENCIES)
APM_09 = _apm(pause="900", memory_limit_mib=2500)
# From 0.9 a huey consumer that takes the Redis port from REDIS_PORT (core config).
HUEY_UPDATE_WORKER = Worker(
    name="update", image="tracardi/update-worker", description="Tracardi update worker (huey)",
    required_settings=("ELASTIC_HOST", "REDIS_HOST", "MYSQL_HOST"),
    dependencies=(REDIS, ELASTICSEARCH, MYSQL), commercial=False)
COPING_09 = _core("post-collection", "tracardi/com-tracardi-coping-worker",
                  "Tracardi post-collection (coping) worker", default=False, **_AFTER_INIT)
BRIDGE_QUEUE = _core("bridge-queue", "tracardi/com-bridge-queue", "Tracardi queue bridge",
                     defaults={"PRODUCTION": "yes", "BRIDGE_CHECK": "1800"}, default=False,
                     **_AFTER_INIT)


def _background(role: str = "", default: bool = True) -> Worker:
    """The background-worker image; from 1.1 in a role (CONSUMER_TYPE=system.<role>), one
    unit per role. 0.9 and 1.0 run it once, without CONSUMER_TYPE, as their charts do."""
    if not role:
        return _core("background", "tracardi/background-worker", "Tracardi background worker",
                     **_AFTER_INIT)
    return _core(f"background-{role}", "tracardi/background-worker",
                 f"Tracardi background worker (system.{role})",
                 environment={"CONSUMER_TYPE": f"system.{role}"}, default=default,
                 **_AFTER_INIT)


def _release_09(tag: str, *background: Worker, coping: bool = False) -> Release:
    return Release(tag, (INIT_09, *background, APM_09, HUEY_UPDATE_WORKER,
                         *((COPING_09,) if coping else ()), BRIDGE_QUEUE))


# The roles of 1.1.x; the charts enable only `function` by default.
ROLES_11 = (_background("function"), _background("collector", default=False),
            _background("workflow", default=False))

CATALOG: dict[str, Release] = {
    "0.8.1": RELEASE_081,
    "0.8.2": RELEASE_082,
    "0.9.0": _release_09("0.9.0.3", _background(), coping=True),
    "1.0.0": _release_09("1.0.0", _background(), coping=True),
    "1.1.0": _release_09("1.1.0", *ROLES_11),
    # 1.2 adds logger and destination, both on in its chart; its images are tagged 1.2.x.
    "1.2.0": _release_09("1.2.x", *ROLES_11, _background("logger"), _background("destination")),
}

DEFAULT_VERSION = "0.8.1"  # what `workers` lists when no release is named

# Settings Tracardi documents beside those the workers need (tracardi-versions.md, its
# compose files and charts), by the first release that reads them; with the catalog's own
# settings they are the names an env file may hold.
OPTIONAL_SETTINGS: dict[str, tuple[str, ...]] = {
    "0.8.1": ("LICENSE", "API_LICENSE", "ELASTIC_SCHEME", "ELASTIC_PORT",
              "ELASTIC_HTTP_AUTH_USERNAME", "ELASTIC_HTTP_AUTH_PASSWORD",
              "ELASTIC_VERIFY_CERTS", "ELASTIC_QUERY_TIMEOUT", "REDIS_PORT", "REDIS_PASSWORD",
              "LOGGING_LEVEL", "SAVE_LOGS", "PRODUCTION"),
    "0.8.2": ("PULSAR_AUTH_TOKEN", "MULTI_TENANT", "MULTI_TENANT_MANAGER_URL",
              "MULTI_TENANT_MANAGER_API_KEY"),
    "0.9.0": ("MYSQL_PORT", "MYSQL_USERNAME", "MYSQL_PASSWORD", "MYSQL_DATABASE",
              "MYSQL_SCHEMA", "INACTIVITY_TIME_OUT"),
}


def known_settings(version: str) -> frozenset[str]:
    """Every setting a release's entries read: those they need, those the charts give them
    (defaults, roles' fixed settings) and Tracardi's documented optional ones."""
    names_: set[str] = set()
    for worker in entries_for(version):
        names_.update(worker.required_settings, worker.defaults, worker.environment)
    for since, optional in OPTIONAL_SETTINGS.items():
        if _order(since) <= _order(version):
            names_.update(optional)
    return frozenset(names_)


def _order(version: str) -> int:
    return list(CATALOG).index(version)


class CatalogError(ValueError):
    """A version or worker name that the catalog does not know."""


def release(version: str) -> Release:
    try:
        return CATALOG[version]
    except KeyError:
        known = ", ".join(CATALOG)
        raise CatalogError(
            f"Tracardi version {version!r} is not in the catalog (known: {known})"
        ) from None


def entries_for(version: str) -> tuple[Worker, ...]:
    """Everything of a release: workers, its run-once init, its scheduled jobs."""
    return release(version).workers


def workers_for(version: str) -> tuple[Worker, ...]:
    """The long-running workers of a release: what the agent supervises."""
    return tuple(w for w in entries_for(version) if w.kind == "service")


def image_tag_for(version: str) -> str:
    """The tag of a release's images; a version the catalog does not know is its own tag."""
    return CATALOG[version].image_tag if version in CATALOG else version


def select_workers(version: str, wanted: tuple[str, ...] | list[str] = ()) -> tuple[Worker, ...]:
    """The named entries of a version, in catalog order, with what they require (init);
    when no name is given (or 'all'), those the charts enable by default."""
    entries = entries_for(version)
    by_name = {w.name: w for w in entries}
    if not wanted or tuple(wanted) == ("all",):
        chosen = {w.name for w in entries if w.default}
    else:
        for given in wanted:
            if names.worker_name(given) not in by_name:
                known = ", ".join(by_name)
                raise CatalogError(
                    f"unknown worker {given!r} for Tracardi {version} (known: {known})"
                )
        chosen = {names.worker_name(given) for given in wanted}
    for name in list(chosen):
        chosen.update(by_name[name].requires)
    return tuple(w for w in entries if w.name in chosen)
