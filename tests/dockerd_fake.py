"""A fake dockerd: its Engine API on a temporary UNIX socket, answering with recorded responses.

Recorded answers (tests/recorded/docker-<X.Y>/*.http, one folder per dockerd version) are
sent byte for byte, as dockerd sent them, then the connection is closed (they were recorded
with `Connection: close`).
A `Feed` answers a streamed request with whatever the test feeds it, when it feeds it.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).resolve().parent / "recorded"
DOCKER_20 = "docker-20.10"  # Debian 12's dockerd, API 1.41
DOCKER_26 = "docker-26.1"  # Debian 13's dockerd, API 1.45


def recorded(name: str, daemon: str = DOCKER_20) -> bytes:
    return (RECORDED / daemon / name).read_bytes()


def recorded_target(name: str, daemon: str = DOCKER_20) -> str:
    """The request target a recording answered: '/v1.41/containers/json?all=1&...'."""
    requests = json.loads((RECORDED / daemon / "requests.json").read_text())
    return requests[name].split(" ", 1)[1]


def split_response(raw: bytes) -> tuple[bytes, bytes]:
    """(status line and headers with the blank line, body)."""
    head, body = raw.split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n", body


def recorded_json(name: str, daemon: str = DOCKER_20) -> Any:
    """The JSON body of a recorded answer, chunked or not."""
    head, data = split_response(recorded(name, daemon))
    if b"Transfer-Encoding: chunked" in head:
        data = payload(data)
    return json.loads(data)


def chunks(body: bytes) -> list[bytes]:
    """The chunks of a chunked body, each with its framing, the terminating one included."""
    found, at = [], 0
    while at < len(body):
        match = re.match(rb"([0-9a-fA-F]+)\r\n", body[at:])
        assert match, body[at:at + 20]
        size = int(match.group(1), 16)
        end = at + match.end() + size + 2
        found.append(body[at:end])
        at = end
    return found


def payload(body: bytes) -> bytes:
    return b"".join(chunk.split(b"\r\n", 1)[1][:-2] for chunk in chunks(body))


def events_in(raw: bytes) -> list[dict]:
    """The events of a recorded events response."""
    lines = payload(split_response(raw)[1]).splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def chunked(data: bytes, size: int) -> bytes:
    """`data` framed as chunks of `size` bytes (no terminating chunk)."""
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece)
                    for piece in (data[i:i + size] for i in range(0, len(data), size)))


@dataclass(frozen=True)
class Request:
    method: str
    target: str

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.target).query))

    @property
    def filters(self) -> dict[str, list[str]]:
        return json.loads(self.query["filters"])


CLOSE = object()


class Feed:
    """A streamed answer: sends what the test feeds it, in order; CLOSE ends it."""

    def __init__(self, *items: bytes | object):
        self.items: queue.Queue = queue.Queue()
        for item in items:
            self.send(item)

    def send(self, item: bytes | object) -> None:
        self.items.put(item)

    def close(self) -> None:
        self.send(CLOSE)

    def __call__(self, conn: socket.socket, request: Request) -> None:
        while (item := self.items.get(timeout=30)) is not CLOSE:
            conn.sendall(item)


Answer = bytes | Callable[[socket.socket, Request], None]


class FakeDockerd:
    """Serves answers by (method, path): each request takes the next answer queued for its
    route, the last one repeats. Every request is recorded in `requests`."""

    def __init__(self, path: Path):
        self.path = path
        self.requests: list[Request] = []
        self._answers: dict[tuple[str, str], list[Answer]] = {}
        self._closing = threading.Event()
        self._feeds: list[Feed] = []
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(path))
        self._server.listen(16)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def calls(self) -> list[Request]:
        """The requests but the unversioned GET /version the client negotiates with."""
        return [r for r in self.requests if r.target != "/version"]

    def answer(self, method: str, path: str, *answers: Answer) -> None:
        self._answers[(method, path)] = list(answers)
        self._feeds += [answer for answer in answers if isinstance(answer, Feed)]

    def silent(self, conn: socket.socket, request: Request) -> None:
        """An answer that never comes (until the fake is closed)."""
        self._closing.wait(30)

    def close(self) -> None:
        self._closing.set()
        for feed in self._feeds:
            feed.close()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept
        self._server.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            request = Request(method, target)
            self.requests.append(request)
            queued = self._answers.get((method, request.path))
            if not queued:
                body = json.dumps({"message": f"fake: nothing for {method} {target}"})
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (len(body), body.encode()))
                return
            answer = queued.pop(0) if len(queued) > 1 else queued[0]
            with contextlib.suppress(OSError):
                if isinstance(answer, bytes):
                    conn.sendall(answer)
                else:
                    answer(conn, request)
