"""API version negotiation, on recorded answers of dockerd 20.10 (API 1.41), dockerd 26.1
(API 1.45), and dockerd 26.1 started as Docker 29 starts (DOCKER_MIN_API_VERSION=1.44),
which refuses the API 1.41 requests this client sent before it negotiated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerd_fake import (
    CLOSE,
    DOCKER_20,
    DOCKER_26,
    FakeDockerd,
    Feed,
    events_in,
    recorded,
    recorded_target,
    split_response,
)

from tracardi_systemd.host import engine as engine_module
from tracardi_systemd.host.engine import Engine, EngineError, StreamClosed, negotiate

LABEL = "tracardi.managed=true"
WAIT = 5.0


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDockerd]:
    server = FakeDockerd(tmp_path / "docker.sock")
    yield server
    server.close()


def body_of(name: str, daemon: str) -> dict:
    return json.loads(split_response(recorded(name, daemon))[1])


def use_every_call(engine: Engine, daemon: str) -> None:
    """containers, inspect, remove, an event stream, its reconnect: each parsed."""
    inspected = recorded_target("inspect.http", daemon).split("/")[3]
    removed = recorded_target("remove.http", daemon).split("/")[3].split("?")[0]
    assert {c["State"] for c in engine.containers(LABEL)} == {"running", "exited"}
    assert engine.inspect(inspected)["State"]["Running"] is True
    assert engine.remove(removed) is True
    stream = engine.events(since="1", label=LABEL)
    events = events_in(recorded("events.http", daemon))
    assert [stream.poll(WAIT) for _ in events] == events
    with pytest.raises(StreamClosed):
        stream.poll(WAIT)
    stream.reconnect().close()


def answer_calls(fake: FakeDockerd, version: str, daemon: str) -> None:
    """Answer the calls of use_every_call in API `version` with `daemon`'s recordings."""
    head, body = split_response(recorded("events.http", daemon))
    inspected = recorded_target("inspect.http", daemon).split("/")[3]
    removed = recorded_target("remove.http", daemon).split("/")[3].split("?")[0]
    fake.answer("GET", f"/v{version}/containers/json", recorded("containers.http", daemon))
    fake.answer("GET", f"/v{version}/containers/{inspected}/json",
                recorded("inspect.http", daemon))
    fake.answer("DELETE", f"/v{version}/containers/{removed}", recorded("remove.http", daemon))
    fake.answer("GET", f"/v{version}/events", Feed(head, body, CLOSE), Feed(head))


def versions_asked(fake: FakeDockerd) -> set[str]:
    return {r.path.split("/")[1] for r in fake.calls}


# ---------------------------------------------------------------- negotiation

@pytest.mark.parametrize(("daemon", "expected"), [
    ({"Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}, "1.41"),
    ({"Version": "26.1.5", "ApiVersion": "1.45", "MinAPIVersion": "1.24"}, "1.45"),
    # Docker 29 (its published ApiVersion and MinAPIVersion): capped at ours.
    ({"Version": "29.0.0", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}, "1.45"),
    ({"Version": "26.1.5", "ApiVersion": "1.45", "MinAPIVersion": "1.45"}, "1.45"),
    ({"ApiVersion": "1.43"}, "1.43"),  # no MinAPIVersion: no floor
    ({"ApiVersion": "1.100", "MinAPIVersion": "1.9"}, "1.45"),  # numbers, not text
])
def test_the_daemons_version_is_used_up_to_the_newest_this_tool_knows(daemon, expected):
    assert negotiate(daemon) == expected


def test_a_daemon_that_refuses_our_newest_version_is_refused_naming_both() -> None:
    with pytest.raises(EngineError) as raised:
        negotiate({"Version": "30.0.0", "ApiVersion": "1.60", "MinAPIVersion": "1.46"})
    message = str(raised.value)
    assert message.startswith("GET /version: dockerd 30.0.0 refuses Engine API versions "
                              "older than 1.46 (its MinAPIVersion)")
    assert "the newest this tracardi-systemd speaks is 1.45: upgrade tracardi-systemd" in message
    assert "DOCKER_MIN_API_VERSION=1.45" in message


def test_a_daemon_older_than_the_oldest_this_tool_needs_is_refused() -> None:
    with pytest.raises(EngineError, match=r"dockerd 19\.03\.15 speaks Engine API 1\.40 at "
                       r"most, and tracardi-systemd needs 1\.41 \(Docker 20\.10\) or newer: "
                       r"upgrade Docker"):
        negotiate({"Version": "19.03.15", "ApiVersion": "1.40", "MinAPIVersion": "1.12"})


PODMAN_COMPONENTS = [{"Name": "Podman Engine", "Version": "3.4.4"}]


def test_a_podman_too_old_is_named_and_podman_is_what_to_upgrade() -> None:
    with pytest.raises(EngineError) as raised:
        negotiate({"Version": "3.4.4", "ApiVersion": "1.40", "MinAPIVersion": "1.24",
                   "Components": PODMAN_COMPONENTS})
    message = str(raised.value)
    assert message == ("GET /version: podman 3.4.4 speaks Engine API 1.40 at most, and "
                       "tracardi-systemd needs 1.41 or newer: upgrade Podman")


def test_a_podman_that_refuses_our_newest_version_gets_no_dockerd_advice() -> None:
    with pytest.raises(EngineError) as raised:
        negotiate({"Version": "9.0.0", "ApiVersion": "1.60", "MinAPIVersion": "1.50",
                   "Components": PODMAN_COMPONENTS})
    message = str(raised.value)
    assert message.startswith("GET /version: podman 9.0.0 refuses Engine API versions")
    assert message.endswith("upgrade tracardi-systemd") and "dockerd" not in message


@pytest.mark.parametrize("daemon", [{}, {"ApiVersion": 1.45}, {"ApiVersion": "v1"},
                                    {"ApiVersion": "1.45", "MinAPIVersion": "x"}])
def test_a_version_answer_without_a_readable_api_version_is_refused(daemon) -> None:
    with pytest.raises(EngineError, match="answered no Engine API version this tool can read"):
        negotiate(daemon)


# ---------------------------------------------------------------- every call negotiated

@pytest.mark.parametrize(("daemon", "version"), [(DOCKER_26, "1.45"), (DOCKER_20, "1.41")])
def test_each_daemon_is_spoken_to_in_its_version_on_every_path(fake, daemon, version) -> None:
    fake.answer("GET", "/version", recorded("version.http", daemon))
    answer_calls(fake, version, daemon)
    engine = Engine(str(fake.path), timeout=2)

    use_every_call(engine, daemon)

    assert engine.api_version == version
    # Once for the four calls, once more after the stream broke (dockerd restarted?).
    assert [r.target for r in fake.requests].count("/version") == 2
    assert versions_asked(fake) == {f"v{version}"}
    assert len(fake.calls) == 5  # containers, inspect, remove, events, events again


def test_a_daemon_newer_than_ours_is_spoken_to_in_ours(fake, monkeypatch) -> None:
    # dockerd 26.1 speaks 1.45; a tool that knew only up to 1.43 must speak 1.43 to it.
    monkeypatch.setattr(engine_module, "NEWEST_API_VERSION", "1.43")
    fake.answer("GET", "/version", recorded("version.http", DOCKER_26))
    answer_calls(fake, "1.43", DOCKER_26)

    use_every_call(Engine(str(fake.path), timeout=2), DOCKER_26)

    assert versions_asked(fake) == {"v1.43"}


def test_a_daemon_that_refuses_api_141_is_not_asked_in_141(fake) -> None:
    # dockerd 26.1 with DOCKER_MIN_API_VERSION=1.44, as Docker 29: the request the client
    # pinned before (recorded) is refused; the negotiated one is answered.
    fake.answer("GET", "/version", recorded("version-min-1.44.http", DOCKER_26))
    fake.answer("GET", "/v1.41/containers/json", recorded("refused-1.41.http", DOCKER_26))
    answer_calls(fake, "1.45", DOCKER_26)
    engine = Engine(str(fake.path), timeout=2)

    use_every_call(engine, DOCKER_26)

    assert body_of("version-min-1.44.http", DOCKER_26)["MinAPIVersion"] == "1.44"
    assert versions_asked(fake) == {"v1.45"}


def test_a_daemon_whose_floor_is_above_our_newest_is_refused_before_any_call(
        fake, monkeypatch) -> None:
    monkeypatch.setattr(engine_module, "NEWEST_API_VERSION", "1.43")
    fake.answer("GET", "/version", recorded("version-min-1.44.http", DOCKER_26))
    engine = Engine(str(fake.path), timeout=2)

    for call in (lambda: engine.containers(LABEL), lambda: engine.events(label=LABEL)):
        with pytest.raises(EngineError) as raised:
            call()
        assert "dockerd 26.1.5+dfsg1 refuses Engine API versions older than 1.44" in str(
            raised.value)
        assert "the newest this tracardi-systemd speaks is 1.43" in str(raised.value)
    assert fake.calls == []


# ---------------------------------------------------------------- /version failing

def test_a_version_call_that_fails_is_a_clear_error_and_is_asked_again(fake) -> None:
    refusal = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n" \
              b"Content-Length: 27\r\nConnection: close\r\n\r\n{\"message\":\"daemon broken\"}"
    fake.answer("GET", "/version", refusal, recorded("version.http", DOCKER_26))
    fake.answer("GET", "/v1.45/containers/json", recorded("containers.http", DOCKER_26))
    engine = Engine(str(fake.path), timeout=2)

    with pytest.raises(EngineError) as raised:
        engine.containers(LABEL)
    assert str(raised.value) == "GET /version: HTTP 500: daemon broken"
    assert fake.calls == []

    assert len(engine.containers(LABEL)) == 3  # a failed answer is not remembered


def test_a_version_answer_that_is_not_an_object_is_a_clear_error(fake) -> None:
    fake.answer("GET", "/version", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                b"Connection: close\r\n\r\n[]")
    with pytest.raises(EngineError, match=r"^GET /version: not a JSON object: \[\]"):
        Engine(str(fake.path), timeout=2).containers(LABEL)


def test_no_dockerd_is_the_same_clear_error_as_before(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"^GET /version: .*does not exist.*systemctl start"):
        Engine(str(tmp_path / "docker.sock")).containers(LABEL)


# ---------------------------------------------------------------- dockerd restarted

def test_after_the_event_stream_broke_the_version_is_asked_again(fake) -> None:
    # dockerd 20.10 is replaced by 26.1 while the agent's stream is open.
    head20, _ = split_response(recorded("events.http", DOCKER_20))
    head26, _ = split_response(recorded("events.http", DOCKER_26))
    fake.answer("GET", "/version", recorded("version.http", DOCKER_20),
                recorded("version.http", DOCKER_26))
    fake.answer("GET", "/v1.41/events", Feed(head20, CLOSE))
    fake.answer("GET", "/v1.45/events", Feed(head26))
    engine = Engine(str(fake.path), timeout=2)
    stream = engine.events(label=LABEL)
    with pytest.raises(StreamClosed):
        stream.poll(WAIT)

    stream.reconnect().close()

    assert [r.path for r in fake.requests] == ["/version", "/v1.41/events", "/version",
                                               "/v1.45/events"]
    assert engine.api_version == "1.45"


def test_the_26_recordings_hold_what_the_tests_rely_on() -> None:
    events = events_in(recorded("events.http", DOCKER_26))
    assert {"start", "die", "oom", "destroy", "health_status: healthy"} <= {
        e["Action"] for e in events}
    assert events_in(recorded("events-since.http", DOCKER_26)) == events[1:]
    assert body_of("version.http", DOCKER_26)["ApiVersion"] == "1.45"
    assert recorded_target("version.http", DOCKER_26) == "/version"
    assert json.loads(split_response(recorded("refused-1.41.http", DOCKER_26))[1]) == {
        "message": "client version 1.41 is too old. Minimum supported API version is 1.44, "
                   "please upgrade your client to a newer version"}
