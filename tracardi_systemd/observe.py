"""What the host says about the managed workers, read with a fixed number of calls.

`status` and the agent both look through here: one `systemctl show` for every unit, and
`docker ps` plus one `docker inspect` for every labelled container, however many there are.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from tracardi_systemd.cgroup import CgroupUnavailable, containers_memory
from tracardi_systemd.host import Docker, Systemctl
from tracardi_systemd.names import LABEL_MANAGED, LABEL_UNIT, LABEL_WORKER
from tracardi_systemd.observed import ContainerState, UnitState

UNIT_PROPERTIES = (
    "LoadState", "ActiveState", "SubState", "Result", "NRestarts", "MainPID",
    "ActiveEnterTimestampMonotonic", "UnitFileState", "InactiveEnterTimestampMonotonic",
    "ActiveExitTimestampMonotonic",
)


def by_unit(containers: list[ContainerState]) -> dict[str, ContainerState]:
    return {c.unit: c for c in containers if c.is_units_own}


def read_units(systemctl: Systemctl, units: list[str]) -> dict[str, UnitState]:
    shown = systemctl.show(units, UNIT_PROPERTIES)
    return {name: _unit_state(name, shown.get(name, {})) for name in units}


def _unit_state(name: str, props: dict[str, str]) -> UnitState:
    def number(key: str) -> int:
        value = props.get(key, "")
        return int(value) if value.isdigit() else 0

    return UnitState(
        name=name,
        load_state=props.get("LoadState", "not-found"),
        active_state=props.get("ActiveState", "inactive"),
        sub_state=props.get("SubState", "dead"),
        result=props.get("Result", ""),
        restarts=number("NRestarts"),
        main_pid=number("MainPID"),
        active_since_usec=number("ActiveEnterTimestampMonotonic"),
        enabled=props.get("UnitFileState", ""),
        inactive_since_usec=number("InactiveEnterTimestampMonotonic"),
        deactivated_usec=number("ActiveExitTimestampMonotonic"),
    )


def read_containers(docker: Docker) -> list[ContainerState]:
    return [_container_state(c) for c in docker.inspect_labelled(f"{LABEL_MANAGED}=true")]


def _container_state(data: dict) -> ContainerState:
    labels = data.get("Config", {}).get("Labels") or {}
    state = data.get("State", {})
    return ContainerState(
        id=data.get("Id", ""),
        name=data.get("Name", "").lstrip("/"),
        unit=labels.get(LABEL_UNIT, ""),
        worker=labels.get(LABEL_WORKER, ""),
        status=state.get("Status", "unknown"),
        pid=state.get("Pid", 0) or 0,
        started_at=state.get("StartedAt", ""),
        image=data.get("Config", {}).get("Image", ""),
        health=(state.get("Health") or {}).get("Status", ""),
    )


def container_memory(pids: Iterable[int]) -> dict[int, int]:
    """Each container's memory as the kernel counts it for its cgroup (what `docker stats`
    and the OOM killer use), keyed by the container's main pid; {} without a memory cgroup.
    A sum of RSS would count the pages Celery's pool processes share twice."""
    try:
        return containers_memory(pid for pid in pids if pid > 0)
    except CgroupUnavailable:
        return {}


def uptime_seconds(started_at: str, now: datetime) -> float | None:
    """Seconds since docker's StartedAt (RFC 3339 with nanoseconds, UTC)."""
    if not started_at or started_at.startswith("0001-"):
        return None
    trimmed = started_at.rstrip("Z").split(".")[0]
    try:
        started = datetime.fromisoformat(trimmed + "+00:00")
    except ValueError:
        return None
    return max(0.0, (now - started).total_seconds())
