"""The Docker Engine API over dockerd's (or Podman's) UNIX socket, with the standard
library only.

One HTTP request over `/var/run/docker.sock` answers what `docker ps` plus `docker inspect`
answer with two Go client processes. Every call opens its own connection (connect(2) on a
UNIX socket costs microseconds), so an `Engine` can be shared between threads and a dockerd
restart never leaves a dead keep-alive connection behind. Every call has a timeout. Every
failure is an `EngineError` naming the call, the HTTP status and docker's `message`.

Events
------
`Engine.events()` opens one long-lived `GET /events` and returns an `EventStream`. dockerd
writes each event as one chunk of chunked transfer coding holding one JSON object and a
newline, and flushes it at once. The stream reads the raw socket and decodes the framing
itself, because `http.client`'s response reader can neither hand over a line before it
knows more is coming nor wait with a deadline (after one socket timeout its file object
refuses every further read). So an event is handed over as soon as its bytes arrived, and
every wait has a deadline:

    stream.poll(timeout)    the next event, or None if none arrives within timeout
    stream.within(seconds)  an iterator of the events arriving in the next `seconds`
    for event in stream     every event, waiting as long as it takes

An agent thus reacts to events and does its periodic work in one thread:

    stream = engine.events(label="tracardi.managed=true")
    while not stop.is_set():
        try:
            for event in stream.within(next_cycle - time.monotonic()):
                react(event)
        except StreamClosed:
            stream = reconnect_when_dockerd_answers(stream.reconnect)
        cycle()                      # events arriving meanwhile wait in the socket buffer

`StreamClosed` (an `EngineError`) means the connection ended without docker ending the
stream: dockerd stopped or restarted. `stream.reconnect()` opens a new stream with
`since=` the last event handed over (`stream.cursor`, docker's "seconds.nanoseconds" of
its `timeNano`), or the moment the stream was opened if none was, and drops the events at
exactly that nanosecond that were handed over already (docker's `since` is inclusive).
While dockerd is down it raises `EngineError`: try again later. (Where docker.socket
holds the socket, as on Debian, connecting works while dockerd is down and the answer
waits for it, up to the Engine's timeout.)

What `since=` cannot give back: dockerd replays from an in-memory buffer of its last 256
events, which a restart empties. Events logged after the old stream closed and before
dockerd went down (its shutdown stops containers unless live-restore is on) are lost; those
logged by the new dockerd before the reconnect (a container that died while it was down,
reported when it comes back; anything that happened before the reconnect) are replayed.
After a reconnect, list `containers()` again to reconcile.

API version
-----------
Every call but `/_ping` and `/version` goes to `/v<version>/...`. The version is negotiated
as the Docker CLI does: the unversioned `GET /version` is asked once per `Engine` (again
after dockerd went away: a failed connect, a broken event stream) and the daemon's
`ApiVersion` is used, capped at `NEWEST_API_VERSION`, the newest this tool is tested
against, so that a newer dockerd answers in the shapes the parsers know. A dockerd that
accepts nothing that old (its `MinAPIVersion` above ours, as Docker 29 refuses everything
below 1.44), or that speaks nothing as new as `OLDEST_API_VERSION`, is refused with an
`EngineError` naming both versions and what to do.

Podman
------
`Engine(PODMAN_SOCKET)` speaks to Podman's Docker-compatible API on podman.socket (which
starts podman.service at the first connect; an open event stream keeps it running), and
its errors name podman.socket instead of dockerd. `Engine.podman` tells Podman by the
"Podman Engine" component of its GET /version (ApiVersion 1.41 on 5.4, 1.44 on 5.8: the
negotiation is the same), and on Podman three calls speak its dialect, handing callers
Docker's shapes (docs/podman-agent-notes.md has the measurements):

- `containers()` lists through libpod (`/v<libpod version>/libpod/containers/json`; libpod
  routes need a version in the path), because the compat list's Status has no health:
  the entries get the compat list's names, `/` and `sha256:` prefixes, and the health at
  the end of Status as Docker writes it ("Up (healthy)").
- `remove()` deletes through libpod with timeout=0: the compat DELETE stops a running
  container with its StopTimeout first (12.9 s measured), beyond the Engine's timeout.
- `events()` asks for die, start and remove by default: Podman sends no oom, and a
  health_status on every check run, not on a change. Its `remove` is handed over as
  Docker's `destroy`. A container its health check kills gets no `die` (that process's
  events never reach the journal Podman reads events from), only a `remove` with
  containerExitCode: a `remove` with no `die` of its container before it in the stream
  (reconnects included) is handed over as a `die` with that exit status, then the
  `destroy`. `since=` is read by Podman as a float64, so the dedupe at the cursor holds.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

DEFAULT_SOCKET = "/var/run/docker.sock"
PODMAN_SOCKET = "/run/podman/podman.sock"
NEWEST_API_VERSION = "1.45"  # Debian 13's dockerd 26.1: the newest the tests run against
OLDEST_API_VERSION = "1.41"  # Debian 12's dockerd 20.10: the oldest
DEFAULT_TIMEOUT = 10.0
EVENT_ACTIONS = ("die", "oom", "start", "destroy", "health_status")
# Podman never sends oom, and sends health_status on every check run, not on a change.
PODMAN_EVENT_ACTIONS = ("die", "start", "destroy")
PODMAN_ENGINE = "Podman Engine"  # the component of GET /version that tells Podman
MAX_HEAD = 64 * 1024  # bytes of status line and headers before the response is refused
NS = 10**9
EVENTS_CALL = "GET /events"
VERSION_CALL = "GET /version"

Since = float | int | str  # seconds since the epoch, or docker's "seconds.nanoseconds"


class EngineError(Exception):
    """A Docker Engine API call failed: which call, the HTTP status (if any), and why."""

    def __init__(self, call: str, message: str, status: int | None = None):
        self.call, self.message, self.status = call, message, status
        http_part = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{call}: {http_part}{message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404


class StreamClosed(EngineError):
    """The events stream ended without docker ending it: reconnect (EventStream.reconnect)."""


@dataclass(frozen=True)
class Daemon:
    """Who serves the socket, as error messages name it and what to do when it is away."""

    name: str    # what answers on the socket
    hint: str    # what to check, and the command that makes it answer
    group: str   # who owns the socket


DOCKERD = Daemon("dockerd", "is Docker installed and dockerd running? (systemctl start "
                 "docker)", "usually docker")
# podman.socket starts podman.service at the first connect; Debian leaves it disabled.
PODMAN_SERVICE = Daemon("podman.service", "is Podman installed and podman.socket enabled? "
                        "(systemctl enable --now podman.socket)", "root, as podman.socket makes it")


class _UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path: str, timeout: float):
        super().__init__("docker", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Engine:
    """A client of dockerd's Engine API on `socket_path`, speaking the API version it
    negotiates with dockerd (`api_version`), or Podman's dialect of it (`podman`).
    `daemon` is who error messages name: by default podman.service on PODMAN_SOCKET,
    dockerd elsewhere."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = DEFAULT_TIMEOUT,
                 *, daemon: Daemon | None = None):
        self.socket_path = socket_path
        self.timeout = timeout
        self.daemon = daemon or (PODMAN_SERVICE if socket_path == PODMAN_SOCKET else DOCKERD)
        self._daemon: dict | None = None  # dockerd's GET /version, until it goes away
        self._asking = threading.Lock()

    @property
    def api_version(self) -> str:
        """The version every call speaks: see `negotiate` (asks dockerd the first time)."""
        return negotiate(self.version())

    @property
    def podman(self) -> bool:
        """Whether Podman serves the socket: its GET /version names a "Podman Engine"."""
        return _podman_component(self.version()) is not None

    # ------------------------------------------------------------------ calls

    def containers(self, label: str, all: bool = True) -> list[dict]:
        """Containers carrying `label` ("key" or "key=value"), stopped ones too unless not
        `all`: one GET /containers/json (no State.Pid there: see inspect). On Podman, one
        GET /libpod/containers/json in Docker's shape: the compat list has no health."""
        filters = _filters({"label": [label]})
        if self.podman:
            params = {"all": "true" if all else "false", "filters": filters}
            listed = self._json("GET", self._libpod("/containers/json"), params,
                                versioned=False)
            return [_docker_listed(entry) for entry in listed]
        return self._json("GET", "/containers/json",
                          {"all": "1" if all else "0", "filters": filters})

    def inspect(self, container: str) -> dict:
        """GET /containers/{id}/json; EngineError with status 404 if there is no such one."""
        return self._json("GET", f"/containers/{_quote(container)}/json")

    def remove(self, container: str, force: bool = True) -> bool:
        """DELETE /containers/{id}: True if removed, False if there was no such container.
        On Podman through libpod with timeout=0: the compat route stops a running container
        as `podman stop` does, waiting its StopTimeout, longer than our timeout."""
        if self.podman:
            params = {"force": "true" if force else "false", "timeout": "0"}
            status, _ = self._call("DELETE", self._libpod(f"/containers/{_quote(container)}"),
                                   params, accept=(200, 404), versioned=False)
            return status == 200
        params = {"force": "1" if force else "0"}
        status, _ = self._call("DELETE", f"/containers/{_quote(container)}", params,
                               accept=(204, 404))
        return status == 204

    def ping(self) -> bool:
        """Whether dockerd answers GET /_ping with OK (False on any failure)."""
        try:
            _, body = self._call("GET", "/_ping", versioned=False)
        except EngineError:
            return False
        return body.strip() == b"OK"

    def version(self) -> dict:
        """The unversioned GET /version (Version, ApiVersion, MinAPIVersion, ...): asked
        once, then remembered until a connection to dockerd fails."""
        with self._asking:
            if self._daemon is None:
                answer = self._json("GET", "/version", versioned=False)
                if not isinstance(answer, dict):
                    raise EngineError(VERSION_CALL, f"not a JSON object: {answer!r:.200}")
                self._daemon = answer
            return self._daemon

    def forget_version(self) -> None:
        """Ask dockerd its version again at the next call: it may have been restarted."""
        self._daemon = None

    def events(self, since: Since | None = None, until: Since | None = None,
               filters: Mapping[str, Sequence[str]] | None = None, *,
               label: str | None = None,
               actions: Sequence[str] | None = None) -> EventStream:
        """Open GET /events for containers: with `label`, only containers carrying it; only
        `actions` (empty: all; None: EVENT_ACTIONS, PODMAN_EVENT_ACTIONS on Podman);
        `filters` adds or replaces docker filters. Without `since` only new events come;
        with `until` docker ends the stream at that time. On Podman the events are handed
        over in Docker's shapes (see the module's docstring)."""
        podman = self.podman
        if actions is None:
            actions = PODMAN_EVENT_ACTIONS if podman else EVENT_ACTIONS
        merged: dict[str, list[str]] = {"type": ["container"]}
        if actions:
            merged["event"] = _podman_actions(actions) if podman else list(actions)
        if label:
            merged["label"] = [label]
        merged.update({key: list(values) for key, values in (filters or {}).items()})
        dialect = _PodmanEvents(actions) if podman else None
        return EventStream(self, merged, _nanoseconds(since), _nanoseconds(until),
                           dialect=dialect)

    # ------------------------------------------------------------------ plumbing

    def _libpod(self, path: str) -> str:
        """A libpod route: under /v<libpod's API version>, the version in the path
        (unversioned, libpod routes are 404); the caller passes versioned=False."""
        details = (_podman_component(self.version()) or {}).get("Details") or {}
        return f"/v{details.get('APIVersion') or self.version().get('Version')}/libpod{path}"

    def _json(self, method: str, path: str, params: Mapping[str, str] | None = None, *,
              versioned: bool = True) -> Any:
        _, body = self._call(method, path, params, versioned=versioned)
        try:
            return json.loads(body)
        except ValueError:
            raise EngineError(f"{method} {path}", f"not JSON: {body[:200]!r}") from None

    def _call(self, method: str, path: str, params: Mapping[str, str] | None = None, *,
              accept: Sequence[int] = (200,), versioned: bool = True) -> tuple[int, bytes]:
        call = f"{method} {path}"
        target = self._target(path, params, versioned)
        connection = self._connect(call)
        try:
            connection.request(method, target)
            response = connection.getresponse()
            body = response.read()
        except TimeoutError:
            raise EngineError(call, f"no answer from {self.daemon.name} within "
                              f"{self.timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(call, f"the connection to {self.daemon.name} failed: {exc!r}"
                              ) from None
        finally:
            connection.close()
        if response.status not in accept:
            raise EngineError(call, _docker_message(body), response.status)
        return response.status, body

    def _connect(self, call: str) -> _UnixHTTPConnection:
        connection = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            connection.connect()
        except OSError as exc:
            self.forget_version()
            raise EngineError(call, self._unreachable(exc)) from None
        return connection

    def _unreachable(self, exc: OSError) -> str:
        path, daemon = self.socket_path, self.daemon
        if isinstance(exc, FileNotFoundError):
            return f"{path} does not exist: {daemon.hint}"
        if isinstance(exc, PermissionError):
            return (f"permission denied on {path}: run as root, or as a member of the "
                    f"group owning the socket ({daemon.group})")
        if isinstance(exc, ConnectionRefusedError):
            return f"nothing listens on {path}: {daemon.hint}"
        if isinstance(exc, TimeoutError):
            return (f"{daemon.name} did not accept a connection on {path} within "
                    f"{self.timeout:g} s")
        return f"cannot connect to {path}: {exc}"

    def _target(self, path: str, params: Mapping[str, str] | None = None,
                versioned: bool = True) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        prefix = f"/v{self.api_version}" if versioned else ""
        return f"{prefix}{path}{query}"


class EventStream(Iterator[dict]):
    """One GET /events connection, read as events arrive (see the module's docstring)."""

    def __init__(self, engine: Engine, filters: dict[str, list[str]], since_ns: int | None,
                 until_ns: int | None, skip: frozenset[tuple] = frozenset(), *,
                 dialect: _PodmanEvents | None = None):
        self.engine, self.filters, self.until_ns = engine, filters, until_ns
        self.ended = False  # docker ended the stream (only with until=)
        self._dialect = dialect
        self._ready: collections.deque[dict] = collections.deque()  # translated, not handed
        # Where a reconnect resumes: the last event handed over, else where this began.
        self._cursor_ns = since_ns if since_ns is not None else time.time_ns()
        self._at_cursor: set[tuple] = set(skip)
        self._skip = skip
        self._received = bytearray()  # raw bytes not yet decoded
        self._payload = bytearray()   # decoded bytes not yet forming a whole line
        self._chunks: _ChunkDecoder | None = None
        self._sock: socket.socket | None = None
        self._open(since_ns)

    @property
    def cursor(self) -> str:
        """docker's since= for resuming: "seconds.nanoseconds" of the last event seen."""
        return _docker_time(self._cursor_ns)

    def poll(self, timeout: float | None) -> dict | None:
        """The next event; None if none arrived within `timeout` seconds (0: only what is
        already there; None: wait as long as it takes) or the stream has ended.
        Raises StreamClosed if the connection ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._next_buffered()
            if event is not None:
                return event
            if self.ended or not self._receive(deadline):
                return None

    def within(self, seconds: float) -> Iterator[dict]:
        """Each event arriving in the next `seconds` as it arrives, then those already
        there at the end; then the iterator ends (the stream stays open)."""
        deadline = time.monotonic() + max(seconds, 0.0)
        while (event := self.poll(max(deadline - time.monotonic(), 0.0))) is not None:
            yield event

    def __next__(self) -> dict:
        event = self.poll(None)
        if event is None:
            raise StopIteration
        return event

    def reconnect(self) -> EventStream:
        """A new stream with the same filters from `cursor`, without the events at exactly
        `cursor` that this one handed over. EngineError while dockerd does not answer."""
        self.close()
        stream = EventStream(self.engine, self.filters, self._cursor_ns, self.until_ns,
                             frozenset(self._at_cursor), dialect=self._dialect)
        stream._ready = self._ready  # the rest of a translated event the cursor is past
        return stream

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def _open(self, since_ns: int | None) -> None:
        params = {"filters": _filters(self.filters)}
        if since_ns is not None:
            params["since"] = _docker_time(since_ns)
        if self.until_ns is not None:
            params["until"] = _docker_time(self.until_ns)
        target = self.engine._target("/events", params)
        connection = self.engine._connect(EVENTS_CALL)
        try:
            # Connection: close, so that an error answer ends with the connection.
            connection.request("GET", target, headers={"Connection": "close"})
        except OSError as exc:
            connection.close()
            raise EngineError(EVENTS_CALL, f"sending the request failed: {exc!r}") from None
        self._sock = connection.sock
        try:
            self._read_head(time.monotonic() + self.engine.timeout)
        except BaseException:
            self.close()
            raise

    def _read_head(self, deadline: float) -> None:
        while b"\r\n\r\n" not in self._received:
            if len(self._received) > MAX_HEAD:
                raise EngineError(EVENTS_CALL, "response headers too long")
            if not self._receive_raw(deadline):
                raise EngineError(EVENTS_CALL, f"no answer from {self.engine.daemon.name} "
                                  f"within {self.engine.timeout:g} s")
        head, _, rest = bytes(self._received).partition(b"\r\n\r\n")
        self._received = bytearray(rest)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = _status(status_line)
        headers = {name.strip().lower(): value.strip() for name, _, value in
                   (line.partition(":") for line in header_lines)}
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._chunks = _ChunkDecoder() if chunked else None
        if status != 200:
            raise EngineError(EVENTS_CALL, _docker_message(self._error_body(deadline)), status)

    def _error_body(self, deadline: float) -> bytes:
        with contextlib.suppress(StreamClosed):
            while len(self._received) < MAX_HEAD and self._receive_raw(deadline):
                pass
        body = bytes(self._received)
        if self._chunks is not None:
            with contextlib.suppress(ValueError):
                body = _ChunkDecoder().feed(body)
        return body

    def _decode(self, data: bytes) -> bytes:
        assert self._chunks is not None
        try:
            return self._chunks.feed(data)
        except ValueError as exc:
            raise self._closed(f"broken chunked framing: {exc}") from None

    def _receive(self, deadline: float | None) -> bool:
        """Read what arrives before `deadline` into the decoded payload; False on timeout."""
        # Bytes that came with the headers are decoded before reading (maybe an EOF) on.
        if not self._received and not self._receive_raw(deadline, eof_ok=True):
            return False
        data, self._received = bytes(self._received), bytearray()
        if self._chunks is None:
            self._payload += data
        else:
            self._payload += self._decode(data)
            self.ended = self._chunks.done
        return True

    def _receive_raw(self, deadline: float | None, eof_ok: bool = False) -> bool:
        if self._sock is None:
            raise StreamClosed(EVENTS_CALL, "the stream was closed")
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            return False
        except OSError as exc:
            raise self._closed(f"reading failed: {exc!r}") from None
        if not data:
            if eof_ok and self._chunks is None and self.until_ns is not None:
                self.ended = True  # no chunked framing: the end of the body is the close
                return True
            raise self._closed(f"{self.engine.daemon.name} closed the connection")
        self._received += data
        return True

    def _closed(self, why: str) -> StreamClosed:
        self.close()
        self.engine.forget_version()
        return StreamClosed(EVENTS_CALL, f"{why} ({self.engine.daemon.name} stopped or "
                            f"restarted?); resume with reconnect(), since={self.cursor}")

    def _next_buffered(self) -> dict | None:
        while not self._ready and (end := self._payload.find(b"\n")) >= 0:
            line = bytes(self._payload[:end]).strip()
            del self._payload[:end + 1]
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                raise EngineError(EVENTS_CALL, f"docker sent a line that is not JSON: "
                                  f"{line[:200]!r}") from None
            if self._take(event):
                self._ready += self._dialect.translate(event) if self._dialect else [event]
        return self._ready.popleft() if self._ready else None

    def _take(self, event: dict) -> bool:
        """Move the cursor to the event; False for one a previous stream handed over."""
        when = _event_ns(event)
        # Actor.ID: API 1.52 drops the old top-level "id".
        key = (when, (event.get("Actor") or {}).get("ID"), event.get("Action"))
        if key in self._skip:
            return False
        if when > self._cursor_ns:
            self._cursor_ns, self._at_cursor = when, set()
        if when == self._cursor_ns:
            self._at_cursor.add(key)
        return True


class _PodmanEvents:
    """Podman's events in Docker's shapes, for one stream and its reconnects. `remove` is
    Docker's `destroy`. A `remove` with no `die` of its container before it is handed over
    as a `die` (exit status: the remove's containerExitCode) and then the `destroy`: the
    `die` of a container its health check killed never reaches the journal Podman reads
    events from. A health_status carries its verdict in the action, as Docker's does.
    Only the `wanted` actions are handed over (empty: all)."""

    def __init__(self, wanted: Sequence[str]):
        self.wanted = frozenset(wanted)
        self._died: set[str] = set()  # containers whose die came, until their remove

    def translate(self, event: dict) -> list[dict]:
        action = event.get("Action") or event.get("status") or ""
        container = (event.get("Actor") or {}).get("ID", "")
        found = [event]
        if action == "die":
            self._died.add(container)
        elif action == "remove":
            found = [_with_action(event, "destroy")]
            if container not in self._died:
                attributes = (event.get("Actor") or {}).get("Attributes", {})
                found.insert(0, _with_action(event, "die",
                                             exitCode=attributes.get("containerExitCode", "?")))
            self._died.discard(container)
        elif action == "health_status" and event.get("HealthStatus"):
            found = [_with_action(event, f"health_status: {event['HealthStatus']}")]
        return [each for each in found if not self.wanted
                or each["Action"].split(":")[0] in self.wanted]


def _with_action(event: dict, action: str, **attributes: str) -> dict:
    actor = event.get("Actor") or {}
    return {**event, "Action": action, "status": action,
            "Actor": {**actor, "Attributes": {**actor.get("Attributes", {}), **attributes}}}


def _podman_actions(actions: Sequence[str]) -> list[str]:
    """The event filter asking Podman for `actions`: its `remove` for Docker's `destroy`,
    and for `die` too (a health check's kill sends only the `remove`)."""
    asked = [action for action in actions if action != "destroy"]
    if "die" in actions or "destroy" in actions:
        asked.append("remove")
    return list(dict.fromkeys(asked))


HEALTH_SUFFIXES = {"healthy": " (healthy)", "unhealthy": " (unhealthy)",
                   "starting": " (health: starting)"}


def _docker_listed(entry: Mapping[str, Any]) -> dict:
    """An entry of libpod's container list as the compat list gives it, but with the health
    (libpod's Status) at the end of Status as Docker writes it: "Up (healthy)"."""
    state = entry.get("State") or ""
    state = "created" if state == "initialized" else state  # as the compat list says it
    if state in ("running", "paused"):
        status = "Up"
    elif state in ("exited", "stopped"):
        status = f"Exited ({entry.get('ExitCode', 0)})"
    else:
        status = state.capitalize()
    image_id = entry.get("ImageID") or ""
    return {
        "Id": entry.get("Id", ""),
        "Names": [f"/{name}" for name in entry.get("Names") or []],
        "Image": entry.get("Image", ""),
        "ImageID": image_id if image_id.startswith("sha256:") else f"sha256:{image_id}",
        "Labels": entry.get("Labels") or {},
        "State": state,
        "Status": status + HEALTH_SUFFIXES.get(entry.get("Status") or "", ""),
    }


def _podman_component(daemon: Mapping[str, Any]) -> dict | None:
    """The "Podman Engine" component of a GET /version answer, if there is one."""
    for component in daemon.get("Components") or []:
        if isinstance(component, dict) and component.get("Name") == PODMAN_ENGINE:
            return component
    return None


class _ChunkDecoder:
    """Incremental decoder of HTTP/1.1 chunked transfer coding (RFC 9112, section 7.1):
    feed it bytes as they arrive, it returns the payload they complete."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._left = 0          # payload bytes still due in the current chunk
        self._state = "size"    # size -> data -> crlf -> size ... -> trailer -> done

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> bytes:
        self._raw += data
        out = bytearray()
        while self._step(out):
            pass
        return bytes(out)

    def _step(self, out: bytearray) -> bool:
        """Decode one piece if the bytes for it are there; False when more are needed."""
        raw = self._raw
        if self._state == "size" or self._state == "trailer":
            end = raw.find(b"\r\n")
            if end < 0:
                if len(raw) > 1024:
                    raise ValueError("chunk size line too long")
                return False
            line = bytes(raw[:end])
            del raw[:end + 2]
            if self._state == "trailer":
                self._state = "trailer" if line else "done"
                return not self.done
            self._left = _chunk_size(line)
            self._state = "data" if self._left else "trailer"
            return True
        if self._state == "data":
            if not raw:
                return False
            taken = raw[:self._left]
            out += taken
            del raw[:len(taken)]
            self._left -= len(taken)
            if not self._left:
                self._state = "crlf"
            return True
        if self._state == "crlf":
            if len(raw) < 2:
                return False
            if raw[:2] != b"\r\n":
                raise ValueError(f"no CRLF after a chunk: {bytes(raw[:2])!r}")
            del raw[:2]
            self._state = "size"
            return True
        return False


def negotiate(daemon: Mapping[str, Any]) -> str:
    """The API version to speak with a dockerd (or Podman) whose GET /version answered
    `daemon`: its ApiVersion capped at NEWEST_API_VERSION; EngineError if it accepts nothing
    that old (MinAPIVersion) or speaks nothing as new as OLDEST_API_VERSION."""
    speaks = daemon.get("ApiVersion")
    accepts = daemon.get("MinAPIVersion") or OLDEST_API_VERSION  # absent: no floor
    podman = _podman_component(daemon) is not None
    server = f"{'podman' if podman else 'dockerd'} {daemon.get('Version') or '(version unknown)'}"
    try:
        speaks_at, accepts_at = _api_tuple(speaks), _api_tuple(accepts)
    except ValueError:
        raise EngineError(VERSION_CALL, f"{server} answered no Engine API version this tool "
                          f"can read (ApiVersion {speaks!r}, MinAPIVersion {accepts!r})"
                          ) from None
    if accepts_at > _api_tuple(NEWEST_API_VERSION):
        or_dockerd = "" if podman else (
            f", or let dockerd accept {NEWEST_API_VERSION} (DOCKER_MIN_API_VERSION="
            f"{NEWEST_API_VERSION} in docker.service's environment)")
        raise EngineError(VERSION_CALL, f"{server} refuses Engine API versions older than "
                          f"{accepts} (its MinAPIVersion), and the newest this "
                          f"tracardi-systemd speaks is {NEWEST_API_VERSION}: upgrade "
                          f"tracardi-systemd{or_dockerd}")
    if speaks_at < _api_tuple(OLDEST_API_VERSION):
        upgrade = ("or newer: upgrade Podman" if podman
                   else "(Docker 20.10) or newer: upgrade Docker")
        raise EngineError(VERSION_CALL, f"{server} speaks Engine API {speaks} at most, and "
                          f"tracardi-systemd needs {OLDEST_API_VERSION} {upgrade}")
    return min(str(speaks), NEWEST_API_VERSION, key=_api_tuple)


def _api_tuple(version: object) -> tuple[int, int]:
    """"1.45" as (1, 45), to compare; ValueError for anything else."""
    major, dot, minor = str(version).partition(".")
    if not (isinstance(version, str) and dot and major.isdigit() and minor.isdigit()):
        raise ValueError(f"not an API version: {version!r}")
    return int(major), int(minor)


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    try:
        return int(digits, 16)
    except ValueError:
        raise ValueError(f"bad chunk size line {line[:40]!r}") from None


def _status(status_line: str) -> int:
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise EngineError(EVENTS_CALL, f"not an HTTP response: {status_line[:80]!r}")
    return int(parts[1])


def _docker_message(body: bytes) -> str:
    """docker's error body is {"message": "..."}; anything else is shown as it came."""
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    return message or body.decode(errors="replace").strip()[:500] or "(no message)"


def _filters(filters: Mapping[str, Sequence[str]]) -> str:
    """docker's filters query parameter: JSON of {name: [values]}."""
    return json.dumps({name: list(values) for name, values in filters.items()},
                      separators=(",", ":"))


def _quote(container: str) -> str:
    return urllib.parse.quote(container, safe="")


def _nanoseconds(value: Since | None) -> int | None:
    """Seconds (int or float) or docker's "seconds.nanoseconds" text, in nanoseconds."""
    if value is None:
        return None
    if isinstance(value, str):
        seconds, _, fraction = value.partition(".")
        return int(seconds) * NS + int((fraction + "000000000")[:9])
    if isinstance(value, int):
        return value * NS
    return round(value * NS)


def _docker_time(ns: int) -> str:
    return f"{ns // NS}.{ns % NS:09d}"


def _event_ns(event: dict) -> int:
    return int(event.get("timeNano") or int(event.get("time") or 0) * NS)
