"""What docs/podman-agent-notes.md says of Podman's answers, on the answers themselves: real
responses of Podman's Docker-compatible API (and of some libpod calls) recorded in Debian
VM guests (tests/recorded/podman-<version>/README.md), which the Podman dialect of
host/engine.py is built on. Nothing here is mocked: the recordings are read as they came,
and the tool's own Engine and ContainerReader are pointed at them through the fake
dockerd's socket where a test says what the dialect makes of them."""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerd_fake import (
    CLOSE,
    DOCKER_26,
    RECORDED,
    FakeDockerd,
    Feed,
    Request,
    chunks,
    events_in,
    recorded,
    recorded_json,
    recorded_target,
    split_response,
)

from tracardi_systemd.agent.watch import Stop, Watcher
from tracardi_systemd.host.engine import (
    PODMAN_SERVICE,
    PODMAN_SOCKET,
    Engine,
    EngineError,
    EventStream,
    StreamClosed,
)
from tracardi_systemd.host.journal import Journal
from tracardi_systemd.observe.read import ContainerReader

PODMANS = sorted(path.name for path in RECORDED.glob("podman-*"))
LABEL = "tracardi.managed=true"
# The env file's dummy license (API_LICENSE); the dummy Elasticsearch password ends with it.
LICENSE = b"dummy-not-a-secret"
PASSWORD = b"pw-" + LICENSE


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
    version = recorded_json("version.http", podman)
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
    listed = recorded_json("containers.http", podman)
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
    listed = recorded_json("containers-libpod.http", podman)
    assert isinstance(listed, list)
    by_name = {container["Names"][0]: container for container in listed}
    assert sorted(by_name) == sorted(c["Names"][0].lstrip("/")
                                     for c in recorded_json("containers.http", podman))
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


def serve_podman(fake: FakeDockerd, podman: str) -> str:
    """Have the fake answer GET /version as this Podman did; its negotiated API version."""
    fake.answer("GET", "/version", recorded("version.http", podman))
    return str(recorded_json("version.http", podman)["ApiVersion"])


def test_an_engine_knows_podman_by_its_version_component(fake: FakeDockerd,
                                                         podman: str) -> None:
    serve_podman(fake, podman)
    engine = Engine(str(fake.path), timeout=2)
    assert engine.podman is True and engine.podman is True
    assert [r.target for r in fake.requests] == ["/version"]  # asked once


def test_dockerd_is_not_podman(fake: FakeDockerd) -> None:
    fake.answer("GET", "/version", recorded("version.http", DOCKER_26))
    assert Engine(str(fake.path), timeout=2).podman is False


def test_the_reader_sees_podmans_health_through_the_libpod_list(fake: FakeDockerd,
                                                                podman: str) -> None:
    """One libpod list, handed over in the compat list's shape with the health at the end of
    Status, so ContainerReader reads health as it does from dockerd."""
    api = serve_podman(fake, podman)
    libpod_list = recorded_target("containers-libpod.http", podman)
    fake.answer("GET", Request("GET", libpod_list).path,
                recorded("containers-libpod.http", podman))
    for container in recorded_json("containers-libpod.http", podman):
        fake.answer("GET", f"/v{api}/containers/{container['Id']}/json",
                    recorded("inspect.http", podman))
    engine = Engine(str(fake.path), timeout=2)

    listed = engine.containers(LABEL)
    states = ContainerReader(engine).read()

    assert fake.calls[0].target == libpod_list  # all=true, the label filter
    assert not [r for r in fake.calls if r.path.endswith("/containers/json")
                and "/libpod/" not in r.path]
    update = next(entry for entry in listed if entry["Names"] == ["/tracardi-update"])
    assert update["Status"] == "Up (healthy)" and update["State"] == "running"
    assert all(entry["ImageID"].startswith("sha256:") for entry in listed)
    health = {state.name: state.health for state in states}
    assert health.pop("tracardi-update") == "healthy"
    assert len(health) == 4 and set(health.values()) == {""}
    assert {state.status for state in states} == {"running"}
    assert all(state.image.startswith("docker.io/tracardi/") for state in states)


# ---------------------------------------------------------------- inspect and remove

def test_compat_inspect_has_what_the_reader_needs_and_no_conmon_pid(podman: str) -> None:
    inspect = recorded_json("inspect.http", podman)
    assert isinstance(inspect, dict)
    state = inspect["State"]
    assert state["Running"] is True and state["Pid"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", state["StartedAt"])
    assert state["Health"]["Status"] == "healthy"
    assert inspect["HostConfig"]["NetworkMode"] == "host"
    assert "ConmonPid" not in state


def test_libpod_inspect_names_conmon_and_the_payload_cgroup_in_the_unit(podman: str) -> None:
    inspect = recorded_json("inspect-libpod.http", podman)
    assert isinstance(inspect, dict)
    state = inspect["State"]
    assert 0 < state["ConmonPid"] < state["Pid"]
    unit = inspect["Config"]["Labels"]["tracardi.unit"]
    assert state["CgroupPath"] == f"/system.slice/{unit}/libpod-payload-{inspect['Id']}"


def test_a_missing_container_is_404_on_inspect_and_remove(podman: str) -> None:
    for name in ("inspect-404.http", "remove-404.http"):
        assert status(name, podman) == 404
        assert recorded_json(name, podman)["cause"] == "no such container"


def test_compat_remove_is_204_and_libpod_remove_200_with_the_id(podman: str) -> None:
    assert status("remove.http", podman) == 204
    assert status("remove-stop-timeout.http", podman) == 204
    for name in ("remove-libpod.http", "remove-libpod-stop-timeout.http"):
        removed = recorded_target(name, podman).split("/")[4].split("?")[0]
        assert recorded_target(name, podman).endswith("?force=true&timeout=0")
        assert status(name, podman) == 200
        assert recorded_json(name, podman) == [{"Id": removed}]


def test_remove_asks_libpod_to_kill_at_once(fake: FakeDockerd, podman: str) -> None:
    """The compat DELETE waits the container's StopTimeout (12.9 s recorded), longer than
    the Engine's timeout: on Podman, remove() asks libpod for timeout=0."""
    serve_podman(fake, podman)
    target = recorded_target("remove-libpod.http", podman)
    removed = Request("DELETE", target).path.split("/")[-1]
    missing = Request("DELETE", target).path.replace(removed, "no-such-container")
    fake.answer("DELETE", Request("DELETE", target).path, recorded("remove-libpod.http", podman))
    fake.answer("DELETE", missing, recorded("remove-404.http", podman))
    engine = Engine(str(fake.path), timeout=2)

    assert engine.remove(removed) is True
    assert engine.remove("no-such-container") is False
    assert [r.target for r in fake.calls] == [target, f"{missing}?force=true&timeout=0"]


def test_an_unreachable_podman_socket_names_podman_socket(tmp_path: Path) -> None:
    assert Engine(PODMAN_SOCKET).daemon == PODMAN_SERVICE
    missing = Engine(str(tmp_path / "podman.sock"), daemon=PODMAN_SERVICE)
    with pytest.raises(EngineError, match=r"podman\.sock does not exist: is Podman installed "
                       r"and podman\.socket enabled\? \(systemctl enable --now podman\.socket\)"):
        missing.containers(LABEL)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(tmp_path / "podman.sock"))  # bound, never listening: refused
        with pytest.raises(EngineError, match=r"nothing listens on .*enable --now podman\.socket"):
            missing.events()
        with pytest.raises(EngineError) as refused:
            missing.version()
        assert "docker" not in str(refused.value)


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


def serve_events(fake: FakeDockerd, podman: str, *feeds: Feed) -> Engine:
    api = serve_podman(fake, podman)
    fake.answer("GET", f"/v{api}/events", *feeds)
    return Engine(str(fake.path), timeout=2)


def recorded_feed(podman: str, *items: bytes | object) -> Feed:
    head, data = split_response(recorded("events.http", podman))
    return Feed(head, data, *items)


def drain(stream: EventStream) -> list[dict]:
    handed = []
    while (event := stream.poll(0.5)) is not None:
        handed.append(event)
    return handed


def actions_of(events: list[dict], container: str) -> list[tuple[str, str | None]]:
    return [(event["Action"], event["Actor"]["Attributes"].get("exitCode"))
            for event in events if event["Actor"]["ID"] == container]


def died_and_health_killed(podman: str) -> tuple[str, str]:
    """The ids of the SIGKILLed scheduler (die, remove) and the health-killed update worker
    (remove only) of the recording."""
    found = events(podman)
    died = next(event for event in found if event["Action"] == "die")
    killed = next(event for event in found if event.get("HealthStatus") == "unhealthy")
    return died["Actor"]["ID"], killed["Actor"]["ID"]


def test_podmans_events_come_in_dockers_shapes(fake: FakeDockerd, podman: str) -> None:
    """remove is destroy; the health kill's lone remove is a die (137) and a destroy; a die
    and its remove are a die and a destroy, not two dies; health checks do not wake."""
    engine = serve_events(fake, podman, recorded_feed(podman))
    died, health_killed = died_and_health_killed(podman)

    handed = drain(engine.events(label=LABEL))

    assert fake.calls[0].filters == {"type": ["container"], "event": ["die", "start", "remove"],
                                     "label": [LABEL]}
    assert {event["Action"] for event in handed} == {"die", "start", "destroy"}
    assert actions_of(handed, died) == [("die", "137"), ("destroy", None)]
    assert actions_of(handed, health_killed) == [("die", "137"), ("destroy", None)]
    assert all(event["status"] == event["Action"] for event in handed)
    starts = [event for event in events(podman) if event["Action"] == "start"]
    assert [event for event in handed if event["Action"] == "start"] == starts


def broken_after_the_die(fake: FakeDockerd, podman: str) -> Engine:
    """An engine whose first events stream breaks right after the scheduler's die; the
    next one hands over the rest (its remove, then the other events)."""
    head, data = split_response(recorded("events.http", podman))
    found = chunks(data)
    at_die = next(i for i, event in enumerate(events(podman))
                  if event["Action"] == "die") + 1
    return serve_events(fake, podman, Feed(head, *found[:at_die], CLOSE),
                        Feed(head, *found[at_die:]))


def test_a_reconnect_keeps_the_dialect_and_the_die_it_saw(fake: FakeDockerd,
                                                          podman: str) -> None:
    """The scheduler's die before the break and its remove after it: no second die."""
    died, _ = died_and_health_killed(podman)
    engine = broken_after_the_die(fake, podman)
    stream = engine.events(label=LABEL, since=events(podman)[0]["time"] - 1)
    before = []
    with pytest.raises(StreamClosed):
        while (event := stream.poll(5)) is not None:
            before.append(event)

    after = drain(stream.reconnect())

    assert fake.calls[1].filters == fake.calls[0].filters
    assert actions_of(before, died) == [("die", "137")]
    assert actions_of(after, died) == [("destroy", None)]


def test_the_agent_journals_each_death_once_across_a_break(fake: FakeDockerd, podman: str,
                                                          tmp_path: Path) -> None:
    """The agent's watcher over the same break resumes the stream: the scheduler's death
    is one journal entry (its remove after the break is no second one), and the health
    kill's lone remove after the break is one too."""
    engine = broken_after_the_die(fake, podman)
    stderr = io.StringIO()
    watcher = Watcher(engine, Journal(str(tmp_path / "no-journald"), stderr))
    woke = [watcher.wait(time.monotonic() + 2, Stop(), docker_active=True) for _ in range(3)]
    watcher.close()

    names = {event["Actor"]["ID"]: event["Actor"]["Attributes"]["name"]
             for event in events(podman)}
    died, health_killed = died_and_health_killed(podman)
    deaths = re.findall(r"container (\S+) died \(exit status (\d+)\)", stderr.getvalue())
    assert deaths == [(names[died], "137"), (names[health_killed], "137")]
    assert woke[:2] == [True, True] and len(fake.calls) == 2


def test_a_reconnect_hands_over_the_rest_of_a_translated_event(fake: FakeDockerd,
                                                                podman: str) -> None:
    """The health kill's remove is a die and a destroy; a reconnect after the die resumes
    past the remove (the cursor), so the destroy comes from what the old stream kept."""
    head, data = split_response(recorded("events.http", podman))
    _, health_killed = died_and_health_killed(podman)
    removed = next(i for i, event in enumerate(events(podman)) if event["Action"] == "remove"
                   and event["Actor"]["ID"] == health_killed) + 1
    engine = serve_events(fake, podman, Feed(head, *chunks(data)[:removed]), Feed(head))
    stream = engine.events(label=LABEL, actions=["die", "destroy"])
    while (event := stream.poll(5)) is not None and event["Actor"]["ID"] != health_killed:
        pass
    assert event is not None and event["Action"] == "die"

    assert actions_of(drain(stream.reconnect()), health_killed) == [("destroy", None)]


def test_health_status_asked_for_carries_the_verdict_as_dockers_does(fake: FakeDockerd,
                                                                    podman: str) -> None:
    engine = serve_events(fake, podman, recorded_feed(podman))

    handed = drain(engine.events(label=LABEL, actions=["health_status"]))

    assert fake.calls[0].filters["event"] == ["health_status"]
    verdicts = [event.get("HealthStatus") for event in events(podman)
                if event["Action"] == "health_status"]
    assert [event["Action"] for event in handed] == [f"health_status: {v}" for v in verdicts]


def test_asking_for_deaths_only_asks_podman_for_removes_too(fake: FakeDockerd,
                                                           podman: str) -> None:
    engine = serve_events(fake, podman, recorded_feed(podman))
    died, health_killed = died_and_health_killed(podman)

    handed = drain(engine.events(label=LABEL, actions=["die"]))

    assert fake.calls[0].filters["event"] == ["die", "remove"]
    assert [event["Actor"]["ID"] for event in handed] == [died, health_killed]
    assert {event["Action"] for event in handed} == {"die"}
