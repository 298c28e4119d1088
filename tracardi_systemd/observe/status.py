"""`status`: one row per managed worker unit, from systemd, Docker and the agent's report;
and the state of the units that are no long-running workers (init, the jobs' timers)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tracardi_systemd.host.commands import ContainerSource, SystemctlClient
from tracardi_systemd.host.engine import EngineError
from tracardi_systemd.install.manifest import Manifest
from tracardi_systemd.names import AGENT_STATE_FILE, AGENT_UNIT, TARGET, is_worker_unit
from tracardi_systemd.observe.agent_state import WorkerReport, read_agent_report
from tracardi_systemd.observe.read import (
    ContainerReader,
    by_unit,
    memory_by_pid,
    read_units,
    uptime_seconds,
)


@dataclass
class WorkerRow:
    unit: str
    unit_state: str  # ActiveState/SubState, e.g. active/running
    container: str  # docker's status, or "missing"
    uptime_seconds: float | None
    restarts: int
    memory_bytes: int | None
    image: str
    agent_state: str
    agent_restarts: int
    last_reason: str
    dependencies: dict[str, bool]  # as the agent last probed them: {name: reachable}
    liveness: str  # Docker's health status of the container: healthy, unhealthy, starting, -
    work: str = "-"  # the agent's work-based liveness: live, not live, stuck, unknown, -
    image_id: str = ""  # the image its container runs (sha256:...), whatever the tag says now
    digest: str = ""  # that image's repo digest, as `upgrade` recorded it ("" if unknown)

    @property
    def problems(self) -> list[str]:
        """Why the worker is not healthy; empty when it is."""
        found = []
        if self.unit_state != "active/running":
            found.append(f"unit {self.unit_state}")
        if self.container != "running":
            found.append(f"container {self.container}")
        found += [f"{name} unreachable" for name, up in self.dependencies.items() if not up]
        if self.liveness == "unhealthy":
            found.append("liveness check failing")
        if self.work == "not live":
            found.append("not taking work")
        elif self.work == "stuck":
            found.append("queue stuck: work waits while it looks live")
        return found

    @property
    def healthy(self) -> bool:
        return not self.problems


@dataclass
class UnitRow:
    """A unit that runs no long-running worker: the run-once init, a scheduled job's timer.
    Both are `active` when all is well: init `exited` after its run, a timer `waiting`."""

    unit: str
    state: str  # ActiveState/SubState
    result: str  # systemd's Result of the last run: success, exit-code...

    @property
    def healthy(self) -> bool:
        return self.state.startswith("active/")


@dataclass
class Status:
    workers: list[WorkerRow]
    agent: str
    docker_problem: str = ""  # why Docker could not be asked (e.g. no access to its socket)
    others: list[UnitRow] = field(default_factory=list)
    upgrade: str = ""  # an upgrade running, or one that was interrupted: what to do

    @property
    def healthy(self) -> bool:
        return (self.agent == "active/running" and not self.docker_problem
                and not self.upgrade
                and all(w.healthy for w in self.workers) and all(o.healthy for o in self.others))

    def to_json(self) -> str:
        rows = [asdict(w) | {"healthy": w.healthy, "problems": w.problems}
                for w in self.workers]
        others = [asdict(o) | {"healthy": o.healthy} for o in self.others]
        return json.dumps({"healthy": self.healthy, "agent": self.agent,
                           "docker_problem": self.docker_problem, "upgrade": self.upgrade,
                           "workers": rows,
                           "others": others}, indent=2)


def collect(manifest: Manifest, systemctl: SystemctlClient, engine: ContainerSource,
            agent_state_file: Path = AGENT_STATE_FILE) -> Status:
    worker_units = [u for u in manifest.units if is_worker_unit(u)]
    other_units = [u for u in manifest.units
                   if u not in (TARGET, AGENT_UNIT) and not is_worker_unit(u)]
    units = read_units(systemctl, [*worker_units, *other_units, AGENT_UNIT])
    docker_problem = ""
    try:
        containers = by_unit(ContainerReader(engine).read())
    except EngineError as exc:
        containers, docker_problem = {}, str(exc)
    memory = memory_by_pid(c.pid for c in containers.values())
    agent_view = read_agent_report(agent_state_file)
    now = datetime.now(UTC)
    rows = []
    for name in worker_units:
        unit, container = units[name], containers.get(name)
        seen = agent_view.workers.get(name, WorkerReport())
        rows.append(WorkerRow(
            unit=name,
            unit_state=f"{unit.active_state}/{unit.sub_state}",
            container=container.status if container else "missing",
            uptime_seconds=uptime_seconds(container.started_at, now) if container else None,
            restarts=unit.restarts,
            memory_bytes=memory.get(container.pid) if container else None,
            image=container.image if container else "",
            agent_state=seen.state,
            agent_restarts=seen.restarts,
            last_reason=seen.last_reason,
            dependencies=seen.dependencies,
            liveness=(container.health or "-") if container else "-",
            work=seen.work or "-",
            image_id=container.image_id if container else "",
            digest=_digest(manifest, name, container.image_id if container else ""),
        ))
    agent = units[AGENT_UNIT]
    others = [UnitRow(name, f"{units[name].active_state}/{units[name].sub_state}",
                      units[name].result) for name in other_units]
    return Status(rows, f"{agent.active_state}/{agent.sub_state}", docker_problem, others,
                  _upgrade(manifest))


def _digest(manifest: Manifest, unit: str, image_id: str) -> str:
    seen = manifest.images.get(unit, {})
    return seen.get("digest", "") if image_id and seen.get("id") == image_id else ""


def _upgrade(manifest: Manifest) -> str:
    record = manifest.in_flight
    if record is None:
        return ""
    if record.running:
        return f"{record.describe()} is running (pid {record.pid})"
    return (f"{record.describe()} was interrupted (pid {record.pid} is gone): workers may run "
            f"either tag; run  tracardi-systemd upgrade --rollback  to put every worker back "
            f"on {record.from_tag}")

