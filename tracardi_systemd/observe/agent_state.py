"""The agent's state file: what the agent publishes for `status` to read.

One schema, written by the agent (agent/loop.py) and read by `status` (observe/status.py).
Reading is forgiving: a missing, partial or foreign file reads as "the agent said nothing"
rather than failing `status`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class WorkerReport:
    state: str = ""  # the agent's State value: running, backoff, held...
    restarts: int = 0  # restarts the agent made
    last_reason: str = ""
    dependencies: dict[str, bool] = field(default_factory=dict)  # address -> reachable
    work: str = ""  # work-based liveness: live, not live, stuck, unknown; "": no verdict

    @classmethod
    def from_json(cls, data: object) -> WorkerReport:
        if not isinstance(data, dict):
            return cls()
        found = data.get("dependencies")
        restarts = data.get("restarts")
        return cls(
            state=str(data.get("state", "")),
            restarts=restarts if isinstance(restarts, int) else 0,
            last_reason=str(data.get("last_reason", "")),
            dependencies={str(name): bool(up) for name, up in found.items()}
            if isinstance(found, dict) else {},
            work=str(data.get("work", "")),
        )


@dataclass(frozen=True)
class AgentReport:
    summary: str = ""
    workers: dict[str, WorkerReport] = field(default_factory=dict)  # unit -> report

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, text: str) -> AgentReport:
        try:
            data = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        workers = data.get("workers")
        return cls(
            summary=str(data.get("summary", "")),
            workers={str(unit): WorkerReport.from_json(seen) for unit, seen in workers.items()}
            if isinstance(workers, dict) else {},
        )


def read_agent_report(path: Path) -> AgentReport:
    """The agent's last report; empty when it has not written one."""
    try:
        return AgentReport.from_json(path.read_text())
    except OSError:
        return AgentReport()
