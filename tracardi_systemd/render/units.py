"""Rendering: one deterministic, pure function from settings to unit files.

`render(settings)` returns `{filename: text}` and never touches the host. Every value
reaches the templates through the escaping filters of `escape`; input that is not safe or
not known is refused with UnsafeValue before anything is rendered.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tracardi_systemd import names
from tracardi_systemd.names import (
    AGENT_UNIT,
    DEFAULT_AGENT_PROGRAM,
    DEFAULT_DOCKER,
    DEFAULT_ENV_FILE,
    DEFAULT_METRICS_DIR,
    LABEL_MANAGED,
    LABEL_UNIT,
    LABEL_WORKER,
    LICENSE_SECRET,
    RUNTIMES,
    TARGET,
)
from tracardi_systemd.render import escape
from tracardi_systemd.render.escape import Specified, UnsafeValue
from tracardi_systemd.spec.catalog import Liveness, Worker, image_tag_for
from tracardi_systemd.spec.envfile import is_env_name
from tracardi_systemd.spec.secrets import LICENSE_NAMES

if TYPE_CHECKING:
    import jinja2

# Settings the tool itself reads and the workers never need (the registry token of `login`).
TOOL_ONLY_SETTINGS = ("TRACARDI_REGISTRY_TOKEN", "TRACARDI_REGISTRY_USER")
# Workers get SAVE_LOGS=no unless the env file says otherwise: with Tracardi's default
# (yes) a worker buffers log records in memory that nothing ever drains. LOGGING_LEVEL=info
# is what Tracardi's documentation gives every worker.
WORKER_DEFAULT_ENV = {"SAVE_LOGS": "no", "LOGGING_LEVEL": "info"}
# The commercial containers read the license from LICENSE; operators keep it as
# API_LICENSE (Tracardi's compose maps one to the other). This fixed script does that
# mapping inside the unit's environment, so the value never appears in any argv.
LICENSE_MAPPING_SCRIPT = 'export LICENSE="${LICENSE:-$API_LICENSE}"; exec "$0" "$@"'
# After the docker client ended: `docker rm -f NAME` (output dropped; $0 the client, $1 the
# container) only if the client may have left its container behind, i.e. it did not exit
# with the container's own status (it was killed, or failed itself with 125-127). A client
# that exits with the container's status has waited for `--rm` to remove it.
CLEANUP_SCRIPT = ('case $EXIT_CODE:$EXIT_STATUS in exited:12[5-7]) ;; exited:*) exit 0 ;; esac; '
                  'exec "$0" rm -f "$1" >/dev/null 2>&1')
# Run by a failed run-once unit ($0, its name): an error line in its journal naming the
# units ($@) that it keeps from starting ("<3>" is journald's priority prefix for err).
RUN_ONCE_FAILED_SCRIPT = (
    '[ "$SERVICE_RESULT" = success ] || echo "<3>$0 failed ($SERVICE_RESULT, $EXIT_CODE '
    '$EXIT_STATUS): $* require it and will not start until it succeeds; see journalctl -u '
    '$0, fix the cause, then: systemctl start tracardi.target"'
)
_IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def fully_qualified(image: str) -> str:
    """`docker.io/NAME` unless NAME's first component already names a registry (a dot or a
    port in it, or localhost), as Docker's own reference rules read it."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"


@dataclass(frozen=True)
class RenderSettings:
    version: str
    workers: tuple[Worker, ...]
    env_keys: tuple[str, ...] = ()
    installed_env_file: str = DEFAULT_ENV_FILE
    image_tag: str | None = None
    network: str | None = None
    replicas: dict[str, int] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    docker: str = DEFAULT_DOCKER
    tool: str = DEFAULT_AGENT_PROGRAM
    agent_interval: int = 10
    memory_limits: tuple[str, ...] = ()  # [WORKER=]MIB, checked by limits.parse_memory_limits
    liveness: bool = True  # Docker health checks from the catalog, where a worker has one
    liveness_interval: int | None = None  # seconds; None: the catalog's
    stop_timeout: int = 10
    restart_sec: str = "0"
    start_limit_burst: int = 5
    start_limit_interval: str = "60s"
    runtime: str = "docker"  # or "podman": Quadlet .container files instead of services
    metrics_dir: str | None = None  # None: DEFAULT_METRICS_DIR
    on_failure: str | None = None  # a unit OnFailure= starts (a template gets `%n`)

    @property
    def tag(self) -> str:
        return self.image_tag or image_tag_for(self.version)

    def image_of(self, worker: Worker) -> str:
        """The worker's image at the tag; on Podman fully qualified (docker.io/...): a short
        name needs a search registry, which Debian's registries.conf does not list, and
        RHEL's enforcing short-name mode asks a TTY to choose one, which a unit has not."""
        image = f"{worker.image}:{self.tag}"
        return fully_qualified(image) if self.runtime == "podman" else image

    @property
    def metrics_directory(self) -> str:
        return self.metrics_dir or DEFAULT_METRICS_DIR

    @property
    def on_failure_directive(self) -> str:
        return names.on_failure_directive(self.on_failure) if self.on_failure else ""

    @property
    def watchdog_sec(self) -> int:
        """Three missed cycles, and never under 30 s: a slow cycle is not a hung agent."""
        return max(30, 3 * self.agent_interval)

    @property
    def agent_argv(self) -> list[str]:
        argv = ["agent", "--env-file", self.installed_env_file,
                "--interval", str(self.agent_interval)]
        for limit in (*self.memory_limits, *self.catalog_memory_limits):
            argv += ["--memory-limit", limit]
        if self.metrics_dir and self.metrics_dir != DEFAULT_METRICS_DIR:
            argv += ["--metrics-dir", self.metrics_dir]
        if self.on_failure:
            argv += ["--on-failure", self.on_failure]
        if self.runtime != "docker":
            argv += ["--runtime", self.runtime]
        return argv

    @property
    def catalog_memory_limits(self) -> list[str]:
        """WORKER=MIB for workers whose chart allows more memory than the agent's default,
        unless the operator gave any --memory-limit (theirs is the last word)."""
        if self.memory_limits:
            return []
        return [f"{w.name}={w.memory_limit_mib}" for w in self.workers if w.memory_limit_mib]


@dataclass(frozen=True)
class WorkerUnit:
    """One catalog entry's unit file: a plain service, a template when a worker has
    replicas; a scheduled job has a timer beside its service."""

    worker: Worker
    replicas: int
    runtime: str = "docker"

    @property
    def is_template(self) -> bool:
        return self.replicas > 1

    @property
    def filename(self) -> str:
        if self.runtime == "podman":
            return names.container_file(self.worker.name, self.is_template)
        return names.unit_file(self.worker.name, self.is_template)

    @property
    def service(self) -> str:
        """The service systemd runs: the file itself, or what Quadlet generates from it."""
        return names.unit_file(self.worker.name, self.is_template)

    @property
    def timer(self) -> str | None:
        return names.timer_file(self.worker.name) if self.worker.kind == "scheduled" else None

    @property
    def instances(self) -> tuple[str, ...]:
        """The unit names to enable and start: a job's timer (which starts the job)."""
        if self.timer:
            return (self.timer,)
        return names.instance_units(self.worker.name, self.replicas)


def worker_units(settings: RenderSettings) -> tuple[WorkerUnit, ...]:
    return tuple(WorkerUnit(w, settings.replicas.get(w.name, 1), settings.runtime)
                 for w in settings.workers)


Command = list[list[str]]  # an Exec*= command's argv, program first, one group per line


@dataclass(frozen=True)
class Runtime:
    """How one runtime's units are written: the template of each kind of catalog entry,
    what else the template is given, and whether tracardi.target must want a template's
    instances (generated units have no [Install])."""

    templates: dict[str, str]  # Worker.kind -> template
    context: Callable[[WorkerUnit, RenderSettings], dict[str, object]]
    target_wants_instances: bool


def render(settings: RenderSettings) -> dict[str, str]:
    """All unit files for the settings, as {filename: text}. Writes nothing."""
    _check(settings)
    runtime = RUNTIME_UNITS[settings.runtime]
    env = _jinja()
    files: dict[str, str] = {}
    wants: list[str] = []
    for unit in worker_units(settings):
        worker = unit.worker
        files[unit.filename] = env.get_template(runtime.templates[worker.kind]).render(
            unit=unit, worker=worker, settings=settings,
            container=Specified(names.container_specifier(unit.is_template)),
            env_defaults=env_defaults(worker, settings),
            requires=[names.unit_file(name, template=False) for name in worker.requires],
            **runtime.context(unit, settings))
        if unit.timer:
            files[unit.timer] = env.get_template("job.timer.j2").render(
                unit=unit, worker=worker, settings=settings)
        if runtime.target_wants_instances and unit.is_template:
            wants += names.instance_units(worker.name, unit.replicas)
    files[TARGET] = env.get_template("tracardi.target.j2").render(settings=settings,
                                                                  wants=wants)
    files[AGENT_UNIT] = env.get_template("agent.service.j2").render(
        settings=settings, exec_start=[[settings.tool, *settings.agent_argv]])
    return files


def _docker_context(unit: WorkerUnit, settings: RenderSettings) -> dict[str, object]:
    """The commands of a `docker run` unit, each built here as one argv."""
    worker, container = unit.worker, Specified(names.container_specifier(unit.is_template))
    docker = settings.docker
    run = [docker, "run", "--rm"]
    if worker.commercial:
        run = ["/bin/sh", "-c", LICENSE_MAPPING_SCRIPT, *run]
    required_by = [w.unit_base for w in settings.workers if worker.name in w.requires]
    return {
        "exec_start": [run, ["--name", container, "--hostname", container,
                             "--label", Specified(f"{LABEL_UNIT}=%n")],
                       *_docker_run_args(worker, settings)],
        "exec_stop": [[docker, "stop", "-t", str(settings.stop_timeout), container]],
        "cleanup": [["/bin/sh", "-c", CLEANUP_SCRIPT, docker, container]],
        "when_failed": [["/bin/sh", "-c", RUN_ONCE_FAILED_SCRIPT, Specified("%n"),
                         *required_by]],
    }


def _quadlet_context(unit: WorkerUnit, settings: RenderSettings) -> dict[str, object]:
    worker = unit.worker
    managed = [f"{LABEL_MANAGED}=true"] if worker.kind == "service" else []
    return {
        "image": settings.image_of(worker),
        "unit_label": Specified(f"{LABEL_UNIT}=%n"),
        "labels": [*managed, f"{LABEL_WORKER}={worker.name}"],
        "liveness": _liveness(worker, settings),
        "fixed_env": worker.environment,
        "env_names": [n for n in container_env_names(worker, settings) if n != "LICENSE"],
        "license_secret": LICENSE_SECRET,
        "install": worker.kind != "scheduled" and not unit.is_template,
    }


RUNTIME_UNITS = {
    "docker": Runtime({"service": "worker.service.j2", "run-once": "run-once.service.j2",
                       "scheduled": "job.service.j2"}, _docker_context,
                      target_wants_instances=False),
    "podman": Runtime(dict.fromkeys(("service", "run-once", "scheduled"), "worker.container.j2"),
                      _quadlet_context, target_wants_instances=True),
}


def _liveness(worker: Worker, settings: RenderSettings) -> Liveness | None:
    if not (settings.liveness and worker.liveness):
        return None
    if settings.liveness_interval:
        return replace(worker.liveness, interval=f"{settings.liveness_interval}s")
    return worker.liveness


def env_defaults(worker: Worker, settings: RenderSettings) -> dict[str, str]:
    """The unit's Environment=: the env file (EnvironmentFile=) overrides each of them."""
    return WORKER_DEFAULT_ENV | worker.defaults | settings.worker_env


def container_env_names(worker: Worker, settings: RenderSettings) -> list[str]:
    """Names passed with `-e NAME`: docker takes each value from the unit's environment."""
    passed = set(settings.env_keys) | set(env_defaults(worker, settings))
    passed -= set(LICENSE_NAMES) | set(TOOL_ONLY_SETTINGS) | set(worker.environment)
    if worker.commercial:
        passed.add("LICENSE")
    return sorted(passed)


def _docker_run_args(worker: Worker, settings: RenderSettings) -> Command:
    """The arguments after `docker run --rm --name NAME ...`, one line's worth per group."""
    groups = [["--init", "--log-driver", "none"]]
    if settings.network:
        groups.append(["--network", settings.network])
    # Only the agent's own: it removes a managed container that no active unit owns, and
    # runs of init or a job are not supervised by it.
    managed = ["--label", f"{LABEL_MANAGED}=true"] if worker.kind == "service" else []
    groups.append([*managed, "--label", f"{LABEL_WORKER}={worker.name}"])
    if settings.liveness and worker.liveness and (settings.liveness_interval or not worker.work):
        # The agent sees from Redis whether a queue consumer works (both hang variants,
        # within a minute, at no cost in the container): a ping every 300 s, 0.35 s of CPU
        # each, adds nothing there unless asked for with --liveness-interval. Podman's
        # files keep it: Podman kills a container that fails it (HealthOnFailure=kill).
        check = worker.liveness
        every = f"{settings.liveness_interval}s" if settings.liveness_interval else check.interval
        groups += [["--health-cmd", check.command],
                   ["--health-interval", every, "--health-timeout", check.timeout,
                    "--health-retries", str(check.retries),
                    "--health-start-period", check.start_period]]
    groups += [["-e", name] for name in container_env_names(worker, settings)]
    groups += [["-e", f"{name}={value}"] for name, value in sorted(worker.environment.items())]
    groups.append([settings.image_of(worker)])
    return groups


def _check(settings: RenderSettings) -> None:
    """Refuse what docker or systemd would not take, naming the option to fix."""
    if settings.runtime not in RUNTIMES:
        raise UnsafeValue(f"--runtime {settings.runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if not _IMAGE_TAG.fullmatch(settings.tag):
        raise UnsafeValue(
            f"--image-tag {settings.tag!r} is not a docker tag: use letters, digits, '_', "
            "'.' and '-' (at most 128, not starting with '.' or '-')"
        )
    if settings.network is not None and not _NETWORK.fullmatch(settings.network):
        raise UnsafeValue(
            f"--network {settings.network!r} is not a docker network name: use letters, "
            "digits, '_', '.' and '-', starting with a letter or digit"
        )
    known = {w.name: w for w in settings.workers}
    for name, count in settings.replicas.items():
        if name not in known:
            raise UnsafeValue(f"--replicas {name}={count}: {name!r} is not a selected worker")
        if known[name].kind != "service" and count != 1:
            raise UnsafeValue(f"--replicas {name}={count}: {name} is a {known[name].kind} "
                              "unit, not a long-running worker; it has no replicas")
        if not 1 <= count <= 1000:
            raise UnsafeValue(f"--replicas {name}={count}: the count must be 1 to 1000")
    for worker in settings.workers:
        for required in worker.requires:
            if required not in known:
                raise UnsafeValue(f"{worker.name} requires {required}, which is not selected")
    for name in settings.env_keys:
        if not is_env_name(name):
            raise UnsafeValue(f"{name!r} is not a valid environment variable name")
    if settings.stop_timeout < 1:
        raise UnsafeValue("the stop timeout must be at least 1 second")
    _check_monitoring(settings)


def _check_monitoring(settings: RenderSettings) -> None:
    if settings.on_failure is not None and not names.is_hook_unit(settings.on_failure):
        raise UnsafeValue(
            f"--on-failure {settings.on_failure!r} is not a unit name: give a service or "
            "target such as notify.service, or a template such as notify@.service (it gets "
            "the failed unit's name as its instance)")
    metrics_dir = settings.metrics_directory
    if not metrics_dir.startswith("/") or any(c.isspace() for c in metrics_dir):
        raise UnsafeValue(f"--metrics-dir {metrics_dir!r}: give an absolute path without "
                          "blanks")
    escape.unit_path(metrics_dir)


@functools.cache
def _jinja() -> jinja2.Environment:
    import jinja2  # here, not at the top: commands that render nothing start faster

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=escape.only_escaped,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(escape.FILTERS)
    return env


def templates_dir() -> Path:
    """The unit templates, shipped inside the package."""
    return Path(__file__).resolve().parent / "templates"
