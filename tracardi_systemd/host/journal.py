"""Structured journal entries: journald's native protocol, or stderr with `<N>` prefixes.

Fields are upper-case names (TRACARDI_WORKER, TRACARDI_ACTION, ...); each kind of event
has a fixed MESSAGE_ID so `journalctl MESSAGE_ID=...` finds every occurrence.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Mapping
from enum import IntEnum
from typing import TextIO

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "tracardi-agent"


class Priority(IntEnum):
    """syslog priorities, as journald stores them."""
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6

def encode(fields: Mapping[str, str]) -> bytes:
    """journald's native datagram: NAME=value lines; values with newlines length-prefixed."""
    parts = []
    for name, value in fields.items():
        data = str(value).encode()
        if b"\n" in data:
            parts.append(name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(name.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class Journal:
    def __init__(self, socket_path: str = JOURNAL_SOCKET, fallback: TextIO | None = None):
        self.socket_path = socket_path
        self.fallback = fallback or sys.stderr
        self.lost = 0  # entries that reached neither journald nor stderr, since the last one did
        self._socket: socket.socket | None = None
        if os.path.exists(socket_path):
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def send(self, message: str, priority: Priority, message_id: str, **fields: str) -> None:
        entry = {
            "MESSAGE": message,
            "PRIORITY": str(int(priority)),
            "MESSAGE_ID": message_id,
            "SYSLOG_IDENTIFIER": IDENTIFIER,
            **{name: str(value) for name, value in fields.items()},
        }
        if self._socket is not None:
            try:
                self._socket.sendto(encode(entry), self.socket_path)
                self.lost = 0
                return
            except OSError:
                pass  # journald restarting or gone: the entry still goes to stderr below
        try:
            self.fallback.write(f"<{int(priority)}>{message}\n")
            self.fallback.flush()
            self.lost = 0
        except (OSError, ValueError):
            self.lost += 1  # stderr closed too (journald gone): supervising goes on
