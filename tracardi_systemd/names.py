"""The one authority for names: units, containers, labels, and the tool's own paths.

Every other module asks here; no module builds a unit or container name of its own. In
unit files the names are written as systemd specifiers (`%N`, `%p-%i`), so a template's
instances need no per-instance text.
"""

from __future__ import annotations

import re
from pathlib import Path

PREFIX = "tracardi-"
TARGET = "tracardi.target"
AGENT_UNIT = "tracardi-agent.service"
DOCKER_UNIT = "docker.service"
# The run-once unit (Tracardi's `init`) that the commercial workers of 0.9+ require: it
# runs and exits, so the agent does not supervise it as a worker.
INIT_UNIT = "tracardi-init.service"

LABEL_MANAGED = "tracardi.managed"
LABEL_WORKER = "tracardi.worker"
LABEL_UNIT = "tracardi.unit"

DEFAULT_ENV_FILE = "/etc/tracardi/.env-docker"
DEFAULT_DOCKER = "/usr/bin/docker"
DEFAULT_AGENT_PROGRAM = "/usr/bin/tracardi-systemd"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
# Podman: Quadlet reads .container files here and generates tracardi-<worker>.service.
DEFAULT_PODMAN = "/usr/bin/podman"
DEFAULT_QUADLET_DIR = "/etc/containers/systemd"
# Podman's API socket, which starts podman.service when the agent connects.
PODMAN_SOCKET_UNIT = "podman.socket"
# The Podman secret that holds the license of the commercial images (LICENSE, else
# API_LICENSE, of the env file); created from stdin by install, never written to a file.
LICENSE_SECRET = "tracardi-license"
RUNTIMES = ("docker", "podman")

# Paths of the tool's own state, relative to the root it works on ("/" on a live host).
STATE_DIR = Path("var/lib/tracardi-systemd")
MANIFEST = STATE_DIR / "manifest.json"
# What uninstall kept (edited units, the env file): a later uninstall --force/--purge
# removes them although the manifest is gone.
KEPT = STATE_DIR / "kept.json"
AGENT_STATE_FILE = Path("/run/tracardi-systemd/agent-state.json")
# node_exporter's textfile directory on Debian, where the agent writes tracardi.prom.
DEFAULT_METRICS_DIR = "/var/lib/prometheus/node-exporter"
METRICS_FILE = "tracardi.prom"

# What a unit file written by this tool may be called: nothing with a '/' or '..'.
_UNIT_FILE = re.compile(
    r"tracardi(-[a-z0-9][a-z0-9-]*)?(@[A-Za-z0-9_.-]*)?\.(service|target|timer|container)"
)


def unit_base(worker: str) -> str:
    """tracardi-scheduler: the unit name of a worker without instance or suffix."""
    return PREFIX + worker


def unit_file(worker: str, template: bool) -> str:
    """The file a worker's unit is written to: a template when it has replicas."""
    return f"{unit_base(worker)}@.service" if template else f"{unit_base(worker)}.service"


def container_file(worker: str, template: bool) -> str:
    """The Quadlet file of a worker on Podman; Quadlet generates unit_file() from it."""
    return unit_file(worker, template).removesuffix(".service") + ".container"


def is_quadlet_file(name: str) -> bool:
    """A file that lives in the Quadlet folder, not in the unit folder."""
    return name.endswith(".container")


def generated_unit(name: str) -> str:
    """The service Quadlet generates from a .container file; other names as they are."""
    return name.removesuffix(".container") + ".service" if is_quadlet_file(name) else name


def timer_file(worker: str) -> str:
    """The timer that starts a scheduled job's tracardi-<job>.service."""
    return f"{unit_base(worker)}.timer"


def instance_units(worker: str, replicas: int) -> tuple[str, ...]:
    """The units to enable and start: tracardi-x.service, or tracardi-x@1..N.service."""
    if replicas > 1:
        return tuple(f"{unit_base(worker)}@{i}.service" for i in range(1, replicas + 1))
    return (unit_file(worker, template=False),)


def container_name(unit: str) -> str:
    """The container a unit runs: tracardi-scheduler@2.service runs tracardi-scheduler-2."""
    return unit.removesuffix(".service").replace("@", "-")


def container_specifier(template: bool) -> str:
    """container_name() as the unit file writes it, with systemd specifiers."""
    return "%p-%i" if template else "%N"


def worker_of_unit(unit: str) -> str:
    """tracardi-scheduler.service and tracardi-scheduler@2.service run `scheduler`;
    tracardi-metrics-job.timer starts `metrics-job`."""
    base = unit.removeprefix(PREFIX).split("@", 1)[0]
    return base.removesuffix(".service").removesuffix(".timer")


def worker_name(given: str) -> str:
    """A worker as an operator may name it: `scheduler` or `tracardi-scheduler`."""
    return given.removeprefix(PREFIX)


def is_unit_file_name(name: str) -> bool:
    return bool(_UNIT_FILE.fullmatch(name)) and ".." not in name


def is_worker_unit(unit: str) -> bool:
    """A long-running worker's unit, which the agent supervises: not the target, the agent,
    the run-once init, or a scheduled job's timer."""
    return (unit.endswith(".service") and unit not in (AGENT_UNIT, INIT_UNIT)
            and is_unit_file_name(unit))


# --on-failure: a unit to start when a worker or the agent fails. A template
# (notify@.service) gets the failed unit's name as its instance, as `%n` gives it.
_HOOK_UNIT = re.compile(r"[A-Za-z0-9:_.-]+(@[A-Za-z0-9:_.-]*)?\.(service|target)")


def is_hook_unit(name: str) -> bool:
    return len(name) <= 255 and _HOOK_UNIT.fullmatch(name) is not None


def on_failure_directive(hook: str) -> str:
    """The OnFailure= value: a template's instance is the failing unit's name (`%n`)."""
    prefix, sep, suffix = hook.partition("@.")
    return f"{prefix}@%n.{suffix}" if sep else hook


def on_failure_unit(hook: str, failed: str) -> str:
    """The unit OnFailure= would start for `failed`: what the agent starts itself."""
    return on_failure_directive(hook).replace("%n", failed)
