"""Reading work from Redis: the RESP client against a scripted server, /proc's TCP tables,
matching a container's connections among Redis' clients, one round trip per address."""

from __future__ import annotations

import socket
import threading

import pytest

from tracardi_systemd.host.redis import RedisError, ask, encode, parse_client_list
from tracardi_systemd.host.sockets import connections_to, parse_tcp_table
from tracardi_systemd.observe.model import QueueReading
from tracardi_systemd.observe.work import (
    Consumer,
    RedisSnapshot,
    own_clients,
    questions,
    read_work,
    reading,
    snapshot,
)
from tracardi_systemd.spec.catalog import CELERY_WORK

SECRET = "s3cret-do-not-leak"


class ScriptedRedis:
    """A TCP server that reads what the client sends, then answers with `reply` bytes."""

    def __init__(self, reply: bytes):
        self.reply, self.received = reply, b""
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.settimeout(2)
            expected = self.reply.count(b"\r\n")  # enough: the client sends all at once
            try:
                while expected and b"\r\n" not in self.received[-2:]:
                    self.received += conn.recv(65536)
            except OSError:
                pass
            conn.sendall(self.reply)
        self.server.close()


CLIENTS = (b"id=3 addr=127.0.0.1:41000 laddr=127.0.0.1:6379 fd=8 name= age=9 idle=0 "
           b"flags=b db=0 sub=0 psub=0 cmd=brpop\n"
           b"id=4 addr=127.0.0.1:41002 laddr=127.0.0.1:6379 fd=9 name= age=9 idle=5 "
           b"flags=P db=0 sub=0 psub=1 cmd=psubscribe\n")


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def test_commands_are_pipelined_with_auth_first_and_replies_read_in_order():
    server = ScriptedRedis(b"+OK\r\n" + bulk(CLIENTS) + b":2\r\n" + bulk(b"{msg}") + b":0\r\n")
    replies = ask(server.address, questions(["celery"], "unacked_index"), SECRET)
    server.thread.join(5)
    assert server.received.startswith(encode(["AUTH", SECRET]))
    assert encode(["CLIENT", "LIST"]) in server.received
    assert replies == [CLIENTS, 2, b"{msg}", 0]


def test_an_error_reply_names_the_command_never_the_password():
    server = ScriptedRedis(b"-WRONGPASS invalid username-password pair\r\n"
                           + b"-NOAUTH Authentication required.\r\n")
    with pytest.raises(RedisError) as caught:
        ask(server.address, [["CLIENT", "LIST"]], SECRET)
    assert "AUTH: WRONGPASS" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_an_unreachable_redis_is_a_redis_error():
    free = socket.create_server(("127.0.0.1", 0))
    address = free.getsockname()
    free.close()
    with pytest.raises(RedisError, match=r"redis 127\.0\.0\.1"):
        ask(address, [["PING"]], timeout=1)


def test_snapshot_reads_queues_and_the_reserved_count():
    server = ScriptedRedis(bulk(CLIENTS) + b":2\r\n" + bulk(b"{oldest}") + b":8\r\n")
    shot = snapshot(server.address, ["celery"], "unacked_index")
    assert shot.queues["celery"].waiting == 2 and shot.queues["celery"].oldest
    assert shot.reserved == 8 and len(shot.clients) == 2


def test_an_empty_queue_has_no_oldest_message():
    server = ScriptedRedis(bulk(b"") + b":0\r\n$-1\r\n:0\r\n")
    assert snapshot(server.address, ["celery"], "unacked_index").queues["celery"].oldest == ""


# /proc/<pid>/net/tcp: 127.0.0.1:41000 -> 127.0.0.1:6379 established; a listener; another
# peer's connection; tcp6 with an IPv4-mapped address.
TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 0100007F:A028 0100007F:18EB 01 00000000:00000000 00:00000000 00000000 65534 0 1
   1: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 2
   2: 0100007F:A02A 0100007F:0050 01 00000000:00000000 00:00000000 00000000 0 0 3
"""
TCP6 = """  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF00000200A8C0:A02C 0000000000000000FFFF00000100A8C0:18EB 01 0 0 0
"""


def test_the_tcp_table_gives_the_local_end_of_connections_to_redis(tmp_path):
    assert parse_tcp_table(TCP, 6379) == {("127.0.0.1", 41000)}
    net = tmp_path / "77" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(TCP)
    (net / "tcp6").write_text(TCP6)
    # An IPv4 Redis: the tcp table alone (the kernel walks its hash table per table read).
    assert connections_to(77, ("127.0.0.1", 6379), proc=tmp_path) == {("127.0.0.1", 41000)}
    assert connections_to(77, ("redis.local", 6379), proc=tmp_path) == {
        ("127.0.0.1", 41000), ("192.168.0.2", 41004)}
    assert connections_to(78, ("127.0.0.1", 6379), proc=tmp_path) == set()


CLIENT_ROWS = parse_client_list(CLIENTS + b"id=5 addr=10.0.0.9:41000 idle=0 cmd=brpop flags=b\n")


def test_own_clients_match_address_and_port():
    mine = own_clients(CLIENT_ROWS, {("127.0.0.1", 41000), ("127.0.0.1", 41002)})
    assert [c["id"] for c in mine] == ["3", "4"]


def test_behind_docker_masquerade_the_port_alone_matches():
    """Redis sees the host's address, not the container's 172.17.0.2."""
    assert [c["id"] for c in own_clients(CLIENT_ROWS, {("172.17.0.2", 41002)})] == ["4"]


def test_a_reading_tells_blocked_idle_and_broadcast():
    shot = RedisSnapshot(CLIENT_ROWS, {}, reserved=3)
    both = reading("r", shot, CELERY_WORK, CLIENT_ROWS[:2])
    assert (both.consuming_idle, both.broadcast, both.reserved) == (0, True, 3)
    stale = [dict(CLIENT_ROWS[0], flags="N", idle="70")]
    assert (reading("r", shot, CELERY_WORK, stale).consuming_idle, reading(
        "r", shot, CELERY_WORK, stale).broadcast) == (70, False)
    assert reading("r", shot, CELERY_WORK, []).consuming_idle is None


WAITING = {"celery": QueueReading(2, "d1")}


def test_one_round_trip_per_redis_address_however_many_consumers():
    asked = []

    def ask_redis(address, queues, reserved, password):
        asked.append((address, queues, password))
        if address[1] == 6380:
            raise RedisError("down")
        return RedisSnapshot(CLIENT_ROWS, WAITING, 0)

    consumers = [Consumer(f"tracardi-update@{i}.service", 100 + i, CELERY_WORK,
                          ("127.0.0.1", 6379), shared=True) for i in (1, 2)]
    consumers.append(Consumer("tracardi-update@3.service", 103, CELERY_WORK,
                              ("127.0.0.1", 6380), shared=False))
    tables = []

    def connections(pid, address):
        tables.append(pid)
        return {("127.0.0.1", 41000)}

    found = read_work(consumers, SECRET, connections=connections, ask_redis=ask_redis)
    assert asked == [(("127.0.0.1", 6379), ["celery"], SECRET),
                     (("127.0.0.1", 6380), ["celery"], SECRET)]
    assert sorted(found) == ["tracardi-update@1.service", "tracardi-update@2.service"]
    assert found["tracardi-update@1.service"].shared
    assert found["tracardi-update@2.service"].consuming_idle == 0
    assert tables == [101], "the host's table read once for both containers on it"


def test_connections_are_not_looked_for_while_no_work_waits():
    def ask_redis(address, queues, reserved, password):
        return RedisSnapshot(CLIENT_ROWS, {"celery": QueueReading(0, "")}, 0)

    def connections(pid, address):
        raise AssertionError("the TCP table read with nothing waiting")

    consumer = Consumer("u", 7, CELERY_WORK, ("127.0.0.1", 6379), shared=False)
    found = read_work([consumer], connections=connections, ask_redis=ask_redis)
    assert found["u"].queues["celery"].waiting == 0
