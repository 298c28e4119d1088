"""The Engine API client against a fake dockerd serving recorded dockerd 20.10 answers
(API 1.41, which the client negotiates with it); dockerd 26.1's are in test_engine_versions."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerd_fake import (
    CLOSE,
    DOCKER_26,
    FakeDockerd,
    Feed,
    Request,
    chunked,
    chunks,
    events_in,
    payload,
    recorded,
    recorded_target,
    split_response,
)

from tracardi_systemd.host import engine as engine_module
from tracardi_systemd.host.engine import EVENT_ACTIONS, Engine, EngineError, StreamClosed

LABEL = "tracardi.managed=true"
EVENTS = events_in(recorded("events.http"))
HEAD, BODY = split_response(recorded("events.http"))
EVENT_CHUNKS = chunks(BODY)  # dockerd sends one event per chunk
WAIT = 5.0  # seconds a poll may wait for bytes the fake is sending
# Recorded events are in the past: a stream from now would not move its cursor to them.
BEFORE = str(EVENTS[0]["time"] - 1)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDockerd]:
    server = FakeDockerd(tmp_path / "docker.sock")
    server.answer("GET", "/version", recorded("version.http"))
    yield server
    server.close()


@pytest.fixture
def engine(fake: FakeDockerd) -> Engine:
    return Engine(str(fake.path), timeout=2)


def name_of(event: dict) -> str:
    return event["Actor"]["Attributes"]["name"]


# ---------------------------------------------------------------- plain calls

def test_the_recordings_hold_what_the_tests_rely_on() -> None:
    assert len(EVENT_CHUNKS) == len(EVENTS) >= 10
    actions = {e["Action"] for e in EVENTS}
    assert {"start", "die", "oom", "destroy", "health_status: healthy"} <= actions
    assert "rec-unlabelled" not in {name_of(e) for e in EVENTS}
    assert events_in(recorded("events-since.http")) == EVENTS[1:]  # since= is inclusive


def test_containers_is_one_call_with_the_label_filter(fake, engine) -> None:
    fake.answer("GET", "/v1.41/containers/json", recorded("containers.http"))

    containers = engine.containers(LABEL)

    assert len(fake.calls) == 1
    request = fake.calls[0]
    assert request.target == recorded_target("containers.http")  # what dockerd was asked
    assert request.query["all"] == "1"
    assert request.filters == {"label": [LABEL]}
    states = {c["Names"][0]: c["State"] for c in containers}
    assert states == {"/rec-oom": "exited", "/rec-health": "running",
                      "/rec-worker": "running"}
    assert all(c["Labels"] == {"tracardi.managed": "true"} for c in containers)


def test_containers_can_ask_for_running_ones_only(fake, engine) -> None:
    fake.answer("GET", "/v1.41/containers/json", recorded("containers.http"))
    engine.containers("tracardi.unit", all=False)
    assert fake.calls[0].query["all"] == "0"
    assert fake.calls[0].filters == {"label": ["tracardi.unit"]}


def test_inspect_parses_the_container(fake, engine) -> None:
    target = recorded_target("inspect.http")
    container = target.split("/")[3]
    fake.answer("GET", target, recorded("inspect.http"))

    data = engine.inspect(container)

    assert data["Id"] == container
    assert data["Name"] == "/rec-worker"
    assert data["State"]["Status"] == "running" and data["State"]["Pid"] > 0


def test_a_missing_container_is_an_error_naming_call_status_and_message(fake, engine) -> None:
    fake.answer("GET", "/v1.41/containers/no-such-container/json",
                recorded("inspect-404.http"))

    with pytest.raises(EngineError) as raised:
        engine.inspect("no-such-container")

    assert raised.value.status == 404 and raised.value.not_found
    assert str(raised.value) == ("GET /containers/no-such-container/json: HTTP 404: "
                                 "No such container: no-such-container")


def test_remove_forces_and_a_missing_container_is_not_an_error(fake, engine) -> None:
    target = recorded_target("remove.http")
    container = target.split("/")[3].split("?")[0]
    fake.answer("DELETE", f"/v1.41/containers/{container}", recorded("remove.http"))
    fake.answer("DELETE", "/v1.41/containers/no-such-container", recorded("remove-404.http"))

    assert engine.remove(container) is True
    assert engine.remove("no-such-container") is False
    assert [r.target for r in fake.calls] == [target, recorded_target("remove-404.http")]


def test_version_and_ping(fake, engine) -> None:
    fake.answer("GET", "/_ping", recorded("ping.http"))

    assert engine.version()["ApiVersion"] == "1.41"
    assert engine.api_version == "1.41"
    assert engine.ping() is True
    assert [r.target for r in fake.requests] == ["/version", "/_ping"]


def test_an_api_version_dockerd_does_not_speak_gives_its_message(fake, engine) -> None:
    # As if dockerd had been restarted with a higher floor after the negotiation.
    fake.answer("GET", "/v1.41/containers/json", recorded("refused-1.41.http", DOCKER_26))

    with pytest.raises(EngineError) as raised:
        engine.containers(LABEL)

    assert raised.value.status == 400
    assert str(raised.value) == ("GET /containers/json: HTTP 400: client version 1.41 is "
                                 "too old. Minimum supported API version is 1.44, please "
                                 "upgrade your client to a newer version")


def test_a_missing_socket_says_what_to_do(tmp_path: Path) -> None:
    missing = Engine(str(tmp_path / "docker.sock"))
    with pytest.raises(EngineError, match=r"does not exist.*systemctl start docker"):
        missing.containers(LABEL)
    assert missing.ping() is False
    with pytest.raises(EngineError, match="does not exist"):
        missing.events()


def test_a_socket_nobody_listens_on_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # bound, never listening: connect is refused
        with pytest.raises(EngineError, match=r"nothing listens on .*docker\.sock"):
            Engine(str(path)).version()


def test_permission_denied_says_who_may_connect(tmp_path: Path, monkeypatch) -> None:
    # Root may connect to any socket, so the kernel's refusal is simulated.
    def refuse(self) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(engine_module._UnixHTTPConnection, "connect", refuse)
    with pytest.raises(EngineError) as raised:
        Engine(str(tmp_path / "docker.sock")).version()
    assert str(raised.value).startswith("GET /version: permission denied on ")
    assert "docker" in str(raised.value).split("group")[-1]


def test_every_call_has_a_timeout(fake) -> None:
    fake.answer("GET", "/v1.41/containers/json", fake.silent)
    fake.answer("GET", "/v1.41/events", fake.silent)
    engine = Engine(str(fake.path), timeout=0.2)

    started = time.monotonic()
    with pytest.raises(EngineError, match=r"no answer from dockerd within 0\.2 s"):
        engine.containers(LABEL)
    with pytest.raises(EngineError, match=r"no answer from dockerd within 0\.2 s"):
        engine.events()
    assert time.monotonic() - started < 2


# ---------------------------------------------------------------- events

def test_events_asks_for_container_events_of_the_label(fake, engine) -> None:
    fake.answer("GET", "/v1.41/events", Feed(HEAD), Feed(HEAD), Feed(HEAD))

    engine.events(label=LABEL).close()
    engine.events(since=1795945973.5, until=1795945980, actions=("die",)).close()
    engine.events(since="1795945973.565807904", filters={"type": ["image"]}).close()

    first, second, third = fake.calls
    assert first.path == "/v1.41/events"
    assert first.filters == Request("GET", recorded_target("events.http")).filters
    assert first.filters == {"type": ["container"], "event": list(EVENT_ACTIONS),
                             "label": [LABEL]}
    assert "since" not in first.query
    assert second.query["since"] == "1795945973.500000000"
    assert second.query["until"] == "1795945980.000000000"
    assert second.filters == {"type": ["container"], "event": ["die"]}
    assert third.query["since"] == "1795945973.565807904"
    assert third.filters["type"] == ["image"]


def test_each_event_is_handed_over_as_soon_as_its_chunk_arrives(fake, engine) -> None:
    feed = Feed(HEAD)
    fake.answer("GET", "/v1.41/events", feed)
    stream = engine.events(since=BEFORE, label=LABEL)

    for chunk, expected in zip(EVENT_CHUNKS, EVENTS, strict=True):
        assert stream.poll(0) is None  # nothing was sent that is not handed over yet
        feed.send(chunk)
        assert stream.poll(WAIT) == expected
    assert stream.cursor == f"{EVENTS[-1]['timeNano'] // 10**9}." \
                            f"{EVENTS[-1]['timeNano'] % 10**9:09d}"
    stream.close()


def test_events_split_anywhere_across_chunks_and_reads(fake, engine) -> None:
    # Another server could frame differently: 100-byte chunks cut events in two and
    # hold parts of two; the bytes then arrive 7 at a time. Each event must come out
    # once its last byte (the newline) is in, not later, and not before.
    body = chunked(payload(BODY), 100)
    newlines = [i for i, byte in enumerate(payload(BODY)) if byte == ord("\n")]
    feed = Feed(HEAD)
    fake.answer("GET", "/v1.41/events", feed)
    stream = engine.events(label=LABEL)

    sent = 0
    for newline, expected in zip(newlines, EVENTS, strict=True):
        complete = _framed_offset(newline, 100) + 1
        for piece in range(sent, complete, 7):
            feed.send(body[piece:min(piece + 7, complete)])
        sent = complete
        assert stream.poll(WAIT) == expected
        assert stream.poll(0.02) is None
    stream.close()


def _framed_offset(offset: int, size: int) -> int:
    """Where payload byte `offset` sits in a body framed in chunks of `size` bytes."""
    chunk, within = divmod(offset, size)
    header = len(b"%x\r\n" % size)
    return chunk * (header + size + 2) + header + within


def test_a_stream_docker_ends_ends_the_iteration(fake, engine) -> None:
    raw = recorded("events-since.http")
    assert raw.endswith(b"\r\n0\r\n\r\n")
    fake.answer("GET", "/v1.41/events", raw)

    stream = engine.events(since="1795945973.5", until="1795945976.4")

    assert list(stream) == EVENTS[1:]
    assert stream.ended and stream.poll(0) is None


def test_a_server_closing_mid_stream_is_a_disconnect_after_the_whole_events(fake,
                                                                         engine) -> None:
    half = EVENT_CHUNKS[2][:len(EVENT_CHUNKS[2]) // 2]
    fake.answer("GET", "/v1.41/events", Feed(HEAD, *EVENT_CHUNKS[:2], half, CLOSE))
    stream = engine.events(since=BEFORE, label=LABEL)

    assert [stream.poll(WAIT), stream.poll(WAIT)] == EVENTS[:2]
    with pytest.raises(StreamClosed) as raised:
        stream.poll(WAIT)

    die = EVENTS[1]["timeNano"]
    assert isinstance(raised.value, EngineError)
    assert str(raised.value).startswith("GET /events: dockerd closed the connection")
    assert f"since={die // 10**9}.{die % 10**9:09d}" in str(raised.value)


def test_reconnect_resumes_with_since_and_drops_what_was_handed_over(fake, engine) -> None:
    # The first stream breaks after the die of rec-victim; dockerd's answer to since= of
    # that die (recorded) starts with that very die again.
    fake.answer("GET", "/v1.41/events", Feed(HEAD, *EVENT_CHUNKS[:2], CLOSE),
                recorded("events-since.http"))
    stream = engine.events(since=BEFORE, label=LABEL)
    seen = [stream.poll(WAIT), stream.poll(WAIT)]
    with pytest.raises(StreamClosed):
        stream.poll(WAIT)

    resumed = stream.reconnect()

    again = fake.calls[1]
    assert again.query["since"] == _query_of("events-since.http")["since"] == stream.cursor
    assert again.filters == fake.calls[0].filters
    assert seen + list(resumed) == EVENTS  # each once, in order


def test_reconnect_before_any_event_resumes_from_when_the_stream_opened(fake, engine) -> None:
    fake.answer("GET", "/v1.41/events", Feed(HEAD, CLOSE), Feed(HEAD))
    before = time.time()
    stream = engine.events(label=LABEL)
    after = time.time()
    with pytest.raises(StreamClosed):
        stream.poll(WAIT)

    stream.reconnect().close()

    since = float(fake.calls[1].query["since"])
    assert before - 0.001 <= since <= after


def test_reconnect_while_dockerd_is_down_is_an_error_to_retry(fake, engine) -> None:
    fake.answer("GET", "/v1.41/events", Feed(HEAD, CLOSE))
    stream = engine.events(label=LABEL)
    with pytest.raises(StreamClosed):
        stream.poll(WAIT)
    fake.close()
    fake.path.unlink()

    with pytest.raises(EngineError, match="does not exist"):
        stream.reconnect()


def test_poll_gives_control_back_at_its_timeout_and_the_stream_goes_on(fake, engine) -> None:
    feed = Feed(HEAD)
    fake.answer("GET", "/v1.41/events", feed)
    stream = engine.events(label=LABEL)

    started = time.monotonic()
    assert stream.poll(0.2) is None
    waited = time.monotonic() - started
    feed.send(EVENT_CHUNKS[0][:10])  # an event that has begun to arrive, not finished
    assert stream.poll(0.1) is None
    feed.send(EVENT_CHUNKS[0][10:])

    assert stream.poll(WAIT) == EVENTS[0]
    assert 0.2 <= waited < 1.5
    stream.close()


def test_within_yields_what_arrives_then_returns_at_its_deadline(fake, engine) -> None:
    fake.answer("GET", "/v1.41/events", Feed(HEAD, *EVENT_CHUNKS[:3]))
    stream = engine.events(label=LABEL)

    started = time.monotonic()
    got = list(stream.within(0.3))
    took = time.monotonic() - started

    assert got == EVENTS[:3]
    assert 0.3 <= took < 1.5
    assert list(stream.within(0)) == []
    stream.close()


def test_an_error_answer_to_events_gives_dockers_message(fake, engine) -> None:
    # dockerd refuses an API version in the same words on every path (recorded on
    # /containers/json).
    fake.answer("GET", "/v1.41/events", recorded("refused-1.41.http", DOCKER_26))

    with pytest.raises(EngineError) as raised:
        engine.events()

    assert raised.value.status == 400 and not isinstance(raised.value, StreamClosed)
    assert str(raised.value).startswith("GET /events: HTTP 400: client version 1.41 is "
                                        "too old")


def test_broken_framing_is_a_disconnect(fake, engine) -> None:
    fake.answer("GET", "/v1.41/events", Feed(HEAD, b"zz\r\n{}\n\r\n"))
    stream = engine.events(label=LABEL)
    with pytest.raises(StreamClosed, match="broken chunked framing"):
        stream.poll(WAIT)


def _query_of(name: str) -> dict[str, str]:
    return Request("GET", recorded_target(name)).query


def test_the_chunk_decoder_takes_bytes_one_at_a_time() -> None:
    body = split_response(recorded("events-since.http"))[1]
    decoder = engine_module._ChunkDecoder()

    decoded = b"".join(decoder.feed(body[i:i + 1]) for i in range(len(body)))

    assert decoded == payload(body) and decoder.done
