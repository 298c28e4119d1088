"""The host adapters' parsers on real output recorded from the e2e sandbox (systemd 252,
dockerd 20.10): `systemctl show` through observe.read_units, and the Engine API's
container list and inspect through observe.ContainerReader. See tests/recorded/."""

from __future__ import annotations

import json
from pathlib import Path

from tracardi_systemd.host.commands import Systemctl
from tracardi_systemd.observe.read import ContainerReader, read_units

RECORDED = Path(__file__).parent / "recorded"


class RecordedSystemctl(Systemctl):
    """The real adapter, answering every call with the recorded output."""

    def __init__(self, output: str):
        super().__init__()
        self.output = output
        self.argv_seen: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> str:
        self.argv_seen.append(args)
        return self.output


def test_systemctl_show_of_real_units_reads_back_their_states():
    output = (RECORDED / "systemd-252" / "show.txt").read_text()
    systemctl = RecordedSystemctl(output)
    units = ["rec-running.service", "rec-failed.service", "rec-missing.service",
             "docker.service"]
    states = read_units(systemctl, units)
    running, failed, missing, docker = (states[u] for u in units)
    assert (running.active_state, running.sub_state) == ("active", "running")
    assert running.active_since_usec > 0 and running.inactive_since_usec == 0
    assert (failed.active_state, failed.result) == ("failed", "exit-code")
    assert failed.inactive_since_usec > 0 and failed.deactivated_usec > 0
    assert (missing.active_state, missing.sub_state, missing.active_since_usec) == (
        "inactive", "dead", 0)
    assert docker.active_state == "active" and docker.deactivated_usec == 0
    # one call for all of them, asking for exactly what the agent reads
    assert len(systemctl.argv_seen) == 1 and systemctl.argv_seen[0][0] == "show"


class RecordedEngine:
    """Engine API answers taken from the recorded HTTP bodies."""

    def __init__(self) -> None:
        self.listed = _body("containers.http")
        self.inspected = _body("inspect.http")

    def containers(self, label: str, all: bool = True) -> list[dict]:
        return self.listed

    def inspect(self, container: str) -> dict:
        return self.inspected

    def remove(self, container: str, force: bool = True) -> bool:
        return True


def _body(name: str) -> dict | list:
    raw = (RECORDED / "docker-20.10" / name).read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        body = _unchunk(body)
    return json.loads(body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + rest[:size], rest[size + 2:]
    return out


def test_the_container_list_and_inspect_of_a_real_dockerd_read_back():
    engine = RecordedEngine()
    containers = ContainerReader(engine).read()
    assert containers, "the recording holds at least one labelled container"
    first, listed = containers[0], engine.listed[0]
    assert first.id == listed["Id"]
    assert first.name == listed["Names"][0].lstrip("/")
    assert first.status == listed["State"]
    assert first.pid == engine.inspected["State"]["Pid"]
    assert first.started_at == engine.inspected["State"]["StartedAt"]
    assert first.unit == listed["Labels"].get("tracardi.unit", "")
