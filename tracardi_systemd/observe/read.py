"""What the host says about the managed workers, read with a fixed number of calls.

`status` and the agent both look through here: one `systemctl show` for every unit, and
one Engine API call listing every labelled container, however many there are (plus one
inspect for each container not seen before: its main pid and start time never change).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime

from tracardi_systemd.host.cgroup import CgroupUnavailable, containers_memory
from tracardi_systemd.host.commands import ContainerSource, SystemctlClient
from tracardi_systemd.host.engine import EngineError
from tracardi_systemd.names import LABEL_MANAGED, LABEL_UNIT, LABEL_WORKER
from tracardi_systemd.observe.model import ContainerState, UnitState

UNIT_PROPERTIES = (
    "ActiveState", "SubState", "Result", "NRestarts", "ActiveEnterTimestampMonotonic",
    "InactiveEnterTimestampMonotonic", "ActiveExitTimestampMonotonic",
)


def by_unit(containers: list[ContainerState]) -> dict[str, ContainerState]:
    return {c.unit: c for c in containers if c.is_units_own}


def read_units(systemctl: SystemctlClient, units: list[str],
               previous: dict[str, UnitState] | None = None,
               judged_by: Collection[str] = ()) -> dict[str, UnitState]:
    """systemd's view of `units`. `systemctl show` costs 0.1 s of CPU at 200 units (and
    70 ms of systemd's), so with a `previous` view `systemctl list-units` is asked first
    (4 ms) and `show` only for the units whose state changed since, or that are not
    active: what the policy reads besides the state (Result, timestamps) matters only
    for those. The units `judged_by` are asked with them whenever any is: the policy
    reads their timestamps to judge those units (docker.service's tell whether it went
    down between two looks that both found it active)."""
    kept: dict[str, UnitState] = {}
    if previous:
        listed = systemctl.states(units)
        kept = {name: state for name in units if (state := previous.get(name))
                and state.active_state == "active"
                and listed.get(name, ("",))[1:] == (state.active_state, state.sub_state)}
    asked = [name for name in units if name not in kept]
    if asked:
        asked = [name for name in units if name in asked or name in judged_by]
    shown = systemctl.show(asked, UNIT_PROPERTIES) if asked else {}
    return {name: _unit_state(name, shown.get(name, {})) if name in asked else kept[name]
            for name in units}


def _unit_state(name: str, props: dict[str, str]) -> UnitState:
    def number(key: str) -> int:
        value = props.get(key, "")
        return int(value) if value.isdigit() else 0

    return UnitState(
        name=name,
        active_state=props.get("ActiveState", "inactive"),
        sub_state=props.get("SubState", "dead"),
        result=props.get("Result", ""),
        restarts=number("NRestarts"),
        active_since_usec=number("ActiveEnterTimestampMonotonic"),
        inactive_since_usec=number("InactiveEnterTimestampMonotonic"),
        deactivated_usec=number("ActiveExitTimestampMonotonic"),
    )


class ContainerReader:
    """The managed containers, each listed once per call; details that never change for a
    container (main pid, start time) are inspected once and kept."""

    def __init__(self, engine: ContainerSource):
        self.engine = engine
        self._details: dict[tuple[str, str], dict] = {}  # (id, state) -> inspect's answer

    def read(self) -> list[ContainerState]:
        listed = self.engine.containers(f"{LABEL_MANAGED}=true")
        known, states = {}, []
        for entry in listed:
            key = (entry.get("Id", ""), entry.get("State", ""))
            details = self._details.get(key) or self._inspect(key[0])
            if details is None:
                continue  # gone between the list and the inspect
            known[key] = details
            states.append(_container_state(entry, details))
        self._details = known
        return states

    def _inspect(self, container: str) -> dict | None:
        try:
            return self.engine.inspect(container)
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise


def _container_state(listed: dict, details: dict) -> ContainerState:
    labels = listed.get("Labels") or {}
    state = details.get("State", {})
    names = listed.get("Names") or ["/"]
    return ContainerState(
        id=listed.get("Id", ""),
        name=names[0].lstrip("/"),
        unit=labels.get(LABEL_UNIT, ""),
        worker=labels.get(LABEL_WORKER, ""),
        status=listed.get("State", "unknown"),
        pid=state.get("Pid", 0) or 0,
        started_at=state.get("StartedAt", ""),
        image=listed.get("Image", ""),
        health=_health(listed.get("Status", "")),
        network=(details.get("HostConfig") or {}).get("NetworkMode", ""),
        image_id=listed.get("ImageID", ""),
    )


def _health(status: str) -> str:
    """Docker's health in the list's Status text: "Up 3 minutes (unhealthy)"."""
    for marker, health in (("(healthy)", "healthy"), ("(unhealthy)", "unhealthy"),
                           ("(health: starting)", "starting")):
        if status.endswith(marker):
            return health
    return ""


def memory_by_pid(pids: Iterable[int],
                     read: Callable[[Iterable[int]], dict[int, int]] = containers_memory
                     ) -> dict[int, int]:
    """Each container's memory as the kernel counts it for its cgroup (what `docker stats`
    and the OOM killer use), keyed by the container's main pid; {} without a memory cgroup.
    A sum of RSS would count the pages Celery's pool processes share twice."""
    try:
        return read(pid for pid in pids if pid > 0)
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
