"""Fake host adapters for the agent and `status`: duck-typed stand-ins for `Systemctl` and
`Docker` that answer from dictionaries and record every call."""

from __future__ import annotations

from collections.abc import Sequence

from tracardi_systemd.host.engine import EngineError
from tracardi_systemd.names import LABEL_MANAGED, LABEL_UNIT, LABEL_WORKER


def unit_props(active: str = "active", sub: str = "running", result: str = "success",
               restarts: int = 0) -> dict[str, str]:
    return {"LoadState": "loaded", "ActiveState": active, "SubState": sub, "Result": result,
            "NRestarts": str(restarts), "MainPID": "4242" if active == "active" else "0",
            "ActiveEnterTimestampMonotonic": "123456", "UnitFileState": "enabled"}


class FakeSystemctl:
    """`show` and `states` answer from `units` ({unit: properties}); other calls are only
    recorded."""

    def __init__(self, units: dict[str, dict[str, str]] | None = None):
        self.units = units or {}
        self.shows: list[tuple[list[str], list[str]]] = []
        self.state_lists: list[list[str]] = []
        self.calls: list[tuple[str, ...]] = []
        self.queued: dict[str, str] = {}  # unit -> the type of the job queued for it

    def show(self, units: Sequence[str], properties: Sequence[str]) -> dict[str, dict[str, str]]:
        self.shows.append((list(units), list(properties)))
        return {u: dict(self.units[u], Id=u) for u in units if u in self.units}

    def states(self, units: Sequence[str]) -> dict[str, tuple[str, str, str]]:
        self.state_lists.append(list(units))
        return {u: (p["LoadState"], p["ActiveState"], p["SubState"])
                for u, p in self.units.items() if u in units}

    def jobs(self) -> dict[str, str]:
        return dict(self.queued)

    def __call__(self, *args: str) -> str:
        self.calls.append(args)
        return ""


def inspected(unit: str, status: str = "running", pid: int = 0, cid: str | None = None,
              image: str | None = None,
              started_at: str = "2024-05-01T10:00:00.123456789Z") -> dict:
    """A `docker inspect` entry of a managed worker container."""
    name = unit.removesuffix(".service").replace("@", "-")
    worker = unit.removeprefix("tracardi-").split("@")[0].removesuffix(".service")
    return {
        "Id": cid or f"{name}-id",
        "Name": f"/{name}",
        "Config": {
            "Image": image or f"tracardi/{worker}:0.8.1",
            "Labels": {LABEL_MANAGED: "true", LABEL_UNIT: unit, LABEL_WORKER: worker},
        },
        "State": {"Status": status, "Pid": pid, "StartedAt": started_at},
    }


class FakeEngine:
    """Docker's Engine API answering from `entries` (docker inspect's shape): the list
    call in /containers/json's shape, inspect by id; every call recorded."""

    def __init__(self, entries: list[dict] | None = None):
        self.entries = entries or []
        self.listings: list[str] = []
        self.inspected: list[str] = []
        self.removed: list[str] = []

    def containers(self, label: str, all: bool = True) -> list[dict]:
        self.listings.append(label)
        return [listed(c) for c in self.entries]

    def inspect(self, container: str) -> dict:
        self.inspected.append(container)
        for entry in self.entries:
            if entry["Id"] == container:
                return entry
        raise EngineError(f"GET /containers/{container}/json", "no such container", 404)

    def remove(self, container: str, force: bool = True) -> bool:
        self.removed.append(container)
        before = len(self.entries)
        self.entries = [c for c in self.entries if c["Id"] != container]
        return len(self.entries) < before


def listed(inspected_entry: dict) -> dict:
    """An inspect answer as /containers/json lists it."""
    state = inspected_entry["State"]
    health = (state.get("Health") or {}).get("Status")
    shown = {"healthy": " (healthy)", "unhealthy": " (unhealthy)",
             "starting": " (health: starting)"}.get(health or "", "")
    return {"Id": inspected_entry["Id"], "Names": [inspected_entry["Name"]],
            "Image": inspected_entry["Config"]["Image"],
            "Labels": inspected_entry["Config"]["Labels"], "State": state["Status"],
            "Status": f"Up 5 minutes{shown}" if state["Status"] == "running" else "Exited (0)"}


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
