"""Just enough of Redis' protocol (RESP2) to ask one Redis a few questions per agent tick.

One TCP connection per call: the commands are sent at once (pipelined) and their replies
read in order, so `CLIENT LIST`, `LLEN` of each queue and the like cost one round trip.
A password is sent with AUTH as the first command and never appears in an error.
No dependency: the agent needs five commands, not a client library.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

MAX_REPLY = 16 * 2**20  # bytes of one reply the agent accepts (CLIENT LIST of ~50k clients)


class RedisError(Exception):
    """Redis could not be asked, or answered with an error (the message names which)."""


Reply = bytes | int | list | RedisError | None  # an error reply is returned, not raised


def encode(command: Sequence[str | bytes]) -> bytes:
    parts = [arg.encode() if isinstance(arg, str) else arg for arg in command]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class _Reader:
    def __init__(self, sock: socket.socket):
        self.sock, self.buffer, self.read_total = sock, b"", 0

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RedisError("connection closed by Redis")
        self.read_total += len(chunk)
        if self.read_total > MAX_REPLY:
            raise RedisError(f"reply larger than {MAX_REPLY} bytes")
        self.buffer += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size + 2:]
        return data

    def reply(self) -> Reply:
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.exactly(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise RedisError(f"not a Redis reply: {line[:40]!r}")


def ask(address: tuple[str, int], commands: Sequence[Sequence[str]], password: str = "",
        timeout: float = 2.0) -> list[Reply]:
    """The replies to `commands`, in order. Raises RedisError when Redis cannot be reached,
    refuses the password, or answers any command with an error."""
    sent = [("AUTH", password), *commands] if password else list(commands)
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(b"".join(encode(c) for c in sent))
            reader = _Reader(sock)
            replies = [reader.reply() for _ in sent]
    except OSError as exc:
        raise RedisError(f"redis {address[0]}:{address[1]}: {exc.strerror or exc}") from None
    except ValueError:
        raise RedisError(f"redis {address[0]}:{address[1]}: a reply that is no RESP") from None
    for command, reply in zip(sent, replies, strict=True):
        if isinstance(reply, RedisError):
            # The command's name only: AUTH's argument is the password.
            raise RedisError(f"redis {address[0]}:{address[1]}: {command[0]}: {reply}")
    return replies[1:] if password else replies


def parse_client_list(text: bytes) -> list[dict[str, str]]:
    """CLIENT LIST's lines of `key=value` fields, one dict per connection."""
    clients = []
    for line in text.decode(errors="replace").splitlines():
        fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
        if "addr" in fields:
            clients.append(fields)
    return clients
