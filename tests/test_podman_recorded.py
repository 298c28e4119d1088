"""What docs/podman-agent-notes.md says of Podman's answers, on the answers themselves: real
responses of Podman's Docker-compatible API (and of some libpod calls) recorded in Debian
VM guests (tests/recorded/podman-<version>/README.md), which the Podman dialect of
host/engine.py is to be built on. Nothing here is mocked: the recordings are read as they
came, and the tool's own Engine and ContainerReader are pointed at them through the fake
dockerd's socket where a test says what works unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerd_fake import (
    CLOSE,
    RECORDED,
    FakeDockerd,
    Feed,
    Request,
    events_in,
    payload,
    recorded,
    recorded_target,
    split_response,
)

from tracardi_systemd.host.engine import Engine
from tracardi_systemd.observe.read import ContainerReader

PODMANS = sorted(path.name for path in RECORDED.glob("podman-*"))
LABEL = "tracardi.managed=true"
# The env file's dummy license (API_LICENSE); the dummy Elasticsearch password ends with it.
LICENSE = b"dummy-not-a-secret"
PASSWORD = b"pw-" + LICENSE


def body(name: str, podman: str) -> Any:
    raw = recorded(name, podman)
    head, data = split_response(raw)
    if b"Transfer-Encoding: chunked" in head:
        data = payload(data)
    return json.loads(data)


def headers(name: str, podman: str) -> dict[str, str]:
    head = split_response(recorded(name, podman))[0].decode()
    lines = head.split("\r\n")[1:]
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def status(name: str, podman: str) -> int:
    return int(recorded(name, podman).split(b" ", 2)[1])


def version_of(podman: str) -> str:
    return podman.removeprefix("podman-")


@pytest.fixture(params=PODMANS)
def podman(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDockerd]:
    server = FakeDockerd(tmp_path / "podman.sock")
    yield server
    server.close()


def test_debian_13s_and_unstables_podman_are_recorded() -> None:
    assert PODMANS == ["podman-5.4.2", "podman-5.8.6"]


def test_no_recording_holds_the_license(podman: str) -> None:
    for path in [*(RECORDED / podman).glob("*.http"), RECORDED / podman / "requests.json"]:
        data = path.read_bytes()
        assert data.count(LICENSE) == data.count(PASSWORD), path.name
        assert b"ZHVtbXktbm90LWEtc2VjcmV0" not in data, path.name  # its base64


# ---------------------------------------------------------------- version and ping

def test_version_names_the_podman_engine_and_docker_api_versions(podman: str) -> None:
    version = body("version.http", podman)
    assert isinstance(version, dict)
    assert version["Components"][0]["Name"] == "Podman Engine"
    assert version["Version"] == version_of(podman)
    assert version["MinAPIVersion"] == "1.24"
    assert version["ApiVersion"] in ("1.41", "1.44")
    # The libpod API's own version is only inside the component (and in a header).
    assert version["Components"][0]["Details"]["APIVersion"] == version_of(podman)
    assert version["Components"][0]["Details"]["MinAPIVersion"] == "4.0.0"


def test_every_answer_names_libpod_in_its_headers(podman: str) -> None:
    for name in ("version.http", "ping.http", "containers.http", "inspect.http",
                 "remove.http", "events.http"):
        found = headers(name, podman)
        assert found["Libpod-Api-Version"] == version_of(podman), name
        assert found["Server"] == f"Libpod/{version_of(podman)} (linux)", name


def test_ping_answers_ok(podman: str) -> None:
    assert split_response(recorded("ping.http", podman))[1] == b"OK"


# ---------------------------------------------------------------- the lists

def test_the_compat_list_has_docker_names_and_no_health_in_status(podman: str) -> None:
    listed = body("containers.http", podman)
    assert isinstance(listed, list) and len(listed) == 5
    for container in listed:
        assert container["Names"][0].startswith("/tracardi-")
        assert container["ImageID"].startswith("sha256:")
        assert container["Image"].startswith("docker.io/tracardi/")
        assert container["State"] == "running"
        assert re.fullmatch(r"Up \d+ seconds", container["Status"]), container["Status"]
        # Quadlet's own label, the same unit as ours.
        labels = container["Labels"]
        assert labels["PODMAN_SYSTEMD_UNIT"] == labels["tracardi.unit"]


def test_the_libpod_list_carries_health_and_pid(podman: str) -> None:
    listed = body("containers-libpod.http", podman)
    assert isinstance(listed, list)
    by_name = {container["Names"][0]: container for container in listed}
    assert sorted(by_name) == sorted(c["Names"][0].lstrip("/")
                                     for c in body("containers.http", podman))
    assert by_name["tracardi-update"]["Status"] == "healthy"  # the one with HealthCmd
    assert {c["Status"] for name, c in by_name.items() if name != "tracardi-update"} == {""}
    for container in listed:
        assert isinstance(container["Pid"], int) and container["Pid"] > 0
        assert isinstance(container["StartedAt"], int)  # Unix seconds
        assert not container["ImageID"].startswith("sha256:")


def test_libpod_routes_need_a_version_in_the_path(podman: str) -> None:
    assert status("libpod-unversioned-404.http", podman) == 404
    assert recorded_target("libpod-unversioned-404.http", podman).startswith("/libpod/")
    assert recorded_target("containers-libpod.http", podman).startswith(
        f"/v{version_of(podman)}/libpod/")
    assert status("containers-libpod.http", podman) == 200


def test_the_reader_of_today_sees_no_health_on_podman(fake: FakeDockerd, podman: str) -> None:
    """The compat list is all ContainerReader reads health from: on Podman it finds none,
    although the libpod list says the update worker is healthy."""
    inspected = recorded_target("inspect.http", podman).split("/")[3]
    fake.answer("GET", "/version", recorded("version.http", podman))
    api = body("version.http", podman)["ApiVersion"]
    fake.answer("GET", f"/v{api}/containers/json", recorded("containers.http", podman))
    for container in body("containers.http", podman):
        fake.answer("GET", f"/v{api}/containers/{container['Id']}/json",
                    recorded("inspect.http", podman))

    states = ContainerReader(Engine(str(fake.path), timeout=2)).read()

    update = next(state for state in states if state.name == "tracardi-update")
    assert update.id == inspected
    assert update.status == "running" and update.pid > 0 and update.network == "host"
    assert [state.health for state in states] == [""] * 5


# ---------------------------------------------------------------- inspect and remove

def test_compat_inspect_has_what_the_reader_needs_and_no_conmon_pid(podman: str) -> None:
    inspect = body("inspect.http", podman)
    assert isinstance(inspect, dict)
    state = inspect["State"]
    assert state["Running"] is True and state["Pid"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", state["StartedAt"])
    assert state["Health"]["Status"] == "healthy"
    assert inspect["HostConfig"]["NetworkMode"] == "host"
    assert "ConmonPid" not in state


def test_libpod_inspect_names_conmon_and_the_payload_cgroup_in_the_unit(podman: str) -> None:
    inspect = body("inspect-libpod.http", podman)
    assert isinstance(inspect, dict)
    state = inspect["State"]
    assert 0 < state["ConmonPid"] < state["Pid"]
    unit = inspect["Config"]["Labels"]["tracardi.unit"]
    assert state["CgroupPath"] == f"/system.slice/{unit}/libpod-payload-{inspect['Id']}"


def test_a_missing_container_is_404_on_inspect_and_remove(podman: str) -> None:
    for name in ("inspect-404.http", "remove-404.http"):
        assert status(name, podman) == 404
        assert body(name, podman)["cause"] == "no such container"


def test_compat_remove_is_204_and_libpod_remove_200_with_the_id(podman: str) -> None:
    assert status("remove.http", podman) == 204
    assert status("remove-stop-timeout.http", podman) == 204
    for name in ("remove-libpod.http", "remove-libpod-stop-timeout.http"):
        removed = recorded_target(name, podman).split("/")[4].split("?")[0]
        assert recorded_target(name, podman).endswith("?force=true&timeout=0")
        assert status(name, podman) == 200
        assert body(name, podman) == [{"Id": removed}]


# ---------------------------------------------------------------- events

def events(podman: str, name: str = "events.http") -> list[dict]:
    return events_in(recorded(name, podman))


def test_events_are_chunked_one_per_chunk(podman: str) -> None:
    assert headers("events.http", podman)["Transfer-Encoding"] == "chunked"
    data = split_response(recorded("events.http", podman))[1]
    assert len(re.findall(rb"(?m)^[0-9a-f]+\r\n\{", data)) == len(events(podman))


def test_podman_sends_remove_never_destroy_nor_oom(podman: str) -> None:
    asked = Request("GET", recorded_target("events.http", podman)).filters
    assert {"destroy", "remove", "oom"} <= set(asked["event"])
    actions = {event["Action"] for event in events(podman)}
    assert actions == {"health_status", "die", "remove", "start"}


def test_a_sigkilled_container_dies_with_137_and_is_removed(podman: str) -> None:
    found = events(podman)
    die = next(event for event in found if event["Action"] == "die")
    assert die["status"] == "die"
    assert die["Actor"]["Attributes"]["exitCode"] == "137"
    assert die["Actor"]["Attributes"]["tracardi.unit"] == "tracardi-scheduler.service"
    assert isinstance(die["timeNano"], int) and die["timeNano"] // 10**9 == die["time"]
    then = [event["Action"] for event in found if event["id"] == die["id"]]
    assert then[-2:] == ["die", "remove"]
    removed = [event for event in found if event["Action"] == "remove"]
    assert all(event["Actor"]["Attributes"]["containerExitCode"] == "137" for event in removed)


def test_health_status_comes_on_every_check_with_the_value_apart(podman: str) -> None:
    checks = [event for event in events(podman) if event["Action"] == "health_status"]
    assert all(event["status"] == "health_status" for event in checks)
    values = [event["HealthStatus"] for event in checks]
    assert set(values) == {"healthy", "unhealthy"}
    # Healthy after healthy: an event per check run, not per change (Docker sends one).
    assert values.count("healthy") >= 3 * values.count("unhealthy")


def test_a_container_killed_by_its_health_check_has_no_die_event(podman: str) -> None:
    found = events(podman)
    unhealthy = next(event for event in found if event.get("HealthStatus") == "unhealthy")
    after = [event["Action"] for event in found if event["id"] == unhealthy["id"]
             and event["timeNano"] > unhealthy["timeNano"]]
    assert after == ["remove"]
    unit = unhealthy["Actor"]["Attributes"]["tracardi.unit"]
    restarted = [event for event in found if event["Action"] == "start"
                 and event["Actor"]["Attributes"]["tracardi.unit"] == unit]
    assert restarted and restarted[0]["id"] != unhealthy["id"]


def since_as_podman_reads_it(text: str) -> int:
    """`since` in nanoseconds as Podman takes it: a float64, so to about 0.2 microseconds."""
    seconds = float(text)
    return int(seconds) * 10**9 + int((seconds - int(seconds)) * 10**9)


def test_since_is_read_as_a_float_so_the_event_at_it_may_come_again(podman: str) -> None:
    """Replayed: the events after `since` rounded to a float. The `die` whose timeNano was
    sent as `since` is left out when the rounding goes up (5.4.2's recording) and replayed
    when it goes down (5.8.6's): neither inclusive nor exclusive to the nanosecond."""
    since = re.search(r"since=(\d+\.\d{9})", recorded_target("events-since.http", podman))
    assert since
    sent = int(since.group(1).replace(".", ""))
    podmans_since = since_as_podman_reads_it(since.group(1))
    assert abs(podmans_since - sent) < 1000
    replayed = events(podman, "events-since.http")
    assert replayed and all(event["timeNano"] > podmans_since for event in replayed)
    at_since = next(event for event in events(podman) if event["timeNano"] == sent)
    assert (at_since in replayed) == (sent > podmans_since)
    data = split_response(recorded("events-since.http", podman))[1]
    assert data.endswith(b"0\r\n\r\n")  # `until` given: the replay ends


def test_both_sides_of_the_rounding_are_recorded() -> None:
    sides = set()
    for podman in PODMANS:
        text = re.search(r"since=(\d+\.\d{9})", recorded_target("events-since.http", podman))
        assert text
        sides.add(int(text.group(1).replace(".", "")) > since_as_podman_reads_it(text.group(1)))
    assert sides == {True, False}


def test_the_engine_of_today_reads_podmans_event_stream(fake: FakeDockerd,
                                                        podman: str) -> None:
    """Negotiation, framing and parsing work unchanged: what the dialect must add is in the
    events' content, not in how they come."""
    api = body("version.http", podman)["ApiVersion"]
    head, data = split_response(recorded("events.http", podman))
    fake.answer("GET", "/version", recorded("version.http", podman))
    fake.answer("GET", f"/v{api}/events", Feed(head, data, CLOSE))
    engine = Engine(str(fake.path), timeout=2)

    stream = engine.events(label=LABEL)
    received = [stream.poll(5) for _ in events(podman)]

    assert engine.api_version == api
    assert received == events(podman)
    assert fake.calls[0].filters["event"] == ["die", "oom", "start", "destroy", "health_status"]
