"""Journal entries: journald's native datagram format, sent to a real AF_UNIX socket, and the
stderr fallback with `<N>` priority prefixes."""

from __future__ import annotations

import io
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracardi_systemd.host.journal import IDENTIFIER, Journal, Priority, encode

ERROR, WARNING = Priority.ERROR, Priority.WARNING


def decode(datagram: bytes) -> list[tuple[str, str]]:
    """journald's reading of a native datagram (the inverse of `encode`)."""
    fields, rest = [], datagram
    while rest:
        newline = rest.index(b"\n")
        line = rest[:newline]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            rest = rest[newline + 1:]
        else:
            name = line
            (size,) = struct.unpack("<Q", rest[newline + 1:newline + 9])
            value = rest[newline + 9:newline + 9 + size]
            assert rest[newline + 9 + size:newline + 10 + size] == b"\n"
            rest = rest[newline + 10 + size:]
        fields.append((name.decode(), value.decode()))
    return fields


def test_encode_simple_fields():
    assert encode({"MESSAGE": "hello world", "PRIORITY": "4", "TRACARDI_UNIT": "a=b"}) == (
        b"MESSAGE=hello world\nPRIORITY=4\nTRACARDI_UNIT=a=b\n")


def test_encode_a_value_with_a_newline_is_length_prefixed():
    assert encode({"MESSAGE": "first\nsecond"}) == (
        b"MESSAGE\n" + (12).to_bytes(8, "little") + b"first\nsecond\n")


def test_encode_counts_bytes_not_characters():
    data = encode({"MESSAGE": "é\n", "PRIORITY": "3"})
    assert data == b"MESSAGE\n" + (3).to_bytes(8, "little") + "é\n".encode() + b"\nPRIORITY=3\n"
    assert decode(data) == [("MESSAGE", "é\n"), ("PRIORITY", "3")]


def test_encode_converts_values_to_text():
    assert encode({"TRACARDI_ATTEMPT": 3}) == b"TRACARDI_ATTEMPT=3\n"


@pytest.fixture
def journald() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for /run/systemd/journal/socket (short path: AF_UNIX
    addresses are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="journal-") as directory:
        path = str(Path(directory) / "socket")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        server.settimeout(5)
        try:
            yield path, server
        finally:
            server.close()


def test_entry_reaches_the_journal_socket(journald):
    path, server = journald
    fallback = io.StringIO()
    journal = Journal(socket_path=path, fallback=fallback)
    journal.send("re-arming tracardi-scheduler.service", WARNING,
                 "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a02", TRACARDI_UNIT="tracardi-scheduler.service",
                 TRACARDI_ACTION="rearm", TRACARDI_ATTEMPT=2)
    fields = dict(decode(server.recv(65536)))
    assert fields == {
        "MESSAGE": "re-arming tracardi-scheduler.service",
        "PRIORITY": "4",
        "MESSAGE_ID": "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a02",
        "SYSLOG_IDENTIFIER": IDENTIFIER,
        "TRACARDI_UNIT": "tracardi-scheduler.service",
        "TRACARDI_ACTION": "rearm",
        "TRACARDI_ATTEMPT": "2",
    }
    assert fallback.getvalue() == ""


def test_multi_line_message_travels_intact(journald):
    path, server = journald
    Journal(socket_path=path, fallback=io.StringIO()).send(
        "line one\nline two", ERROR, "5f1b0b7e2a8c4e6f9d3a1c2b4e6f8a01", TRACARDI_REASON="x")
    fields = dict(decode(server.recv(65536)))
    assert fields["MESSAGE"] == "line one\nline two"
    assert fields["PRIORITY"] == "3"
    assert fields["TRACARDI_REASON"] == "x"


def test_without_a_journal_socket_entries_go_to_the_fallback_with_a_priority(tmp_path):
    fallback = io.StringIO()
    journal = Journal(socket_path=str(tmp_path / "missing"), fallback=fallback)
    journal.send("restarting tracardi-trigger.service", WARNING, "id",
                 TRACARDI_UNIT="tracardi-trigger.service")
    journal.send("gave up", ERROR, "id")
    assert fallback.getvalue() == "<4>restarting tracardi-trigger.service\n<3>gave up\n"


def test_fallback_defaults_to_stderr(tmp_path, capsys):
    Journal(socket_path=str(tmp_path / "missing")).send("hello", WARNING, "id")
    captured = capsys.readouterr()
    assert captured.err == "<4>hello\n"
    assert captured.out == ""


def test_journald_gone_after_start_falls_back(journald):
    path, server = journald
    fallback = io.StringIO()
    journal = Journal(socket_path=path, fallback=fallback)
    server.close()
    Path(path).unlink()
    journal.send("still reported", ERROR, "id")
    assert fallback.getvalue() == "<3>still reported\n"
