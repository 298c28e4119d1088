"""Whether a worker takes its work, as Redis shows it: one pipelined round trip per Redis
address per tick (`CLIENT LIST`, then `LLEN` and `LINDEX -1` of each queue the catalog
names, then `ZCARD` of the unacknowledged messages), and each container's own connections
among Redis' clients, found through the container's network namespace (host/sockets.py).
The verdict is the policy's; this module only reads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from tracardi_systemd.host.redis import RedisError, ask, parse_client_list
from tracardi_systemd.host.sockets import Endpoint, connections_to
from tracardi_systemd.observe.model import QueueReading, WorkReading, queue_key
from tracardi_systemd.spec.catalog import RedisWork

Address = tuple[str, int]
BLOCKED = "b"  # CLIENT LIST flags=: the connection is blocked in a command (BRPOP)


@dataclass(frozen=True)
class RedisSnapshot:
    """One Redis' answers of one tick."""

    clients: list[dict[str, str]]
    queues: dict[str, QueueReading]
    reserved: int


def questions(queues: list[str], reserved: str) -> list[list[str]]:
    asked = [["CLIENT", "LIST"]]
    for queue in queues:
        asked += [["LLEN", queue], ["LINDEX", queue, "-1"]]
    return [*asked, ["ZCARD", reserved]]


def snapshot(address: Address, queues: list[str], reserved: str, password: str = "",
             timeout: float = 2.0) -> RedisSnapshot:
    """Ask one Redis everything of this tick in one round trip. Raises RedisError."""
    replies = ask(address, questions(queues, reserved), password, timeout)
    listed, *per_queue, unacked = replies
    readings = {}
    for i, queue in enumerate(queues):
        length, oldest = per_queue[2 * i], per_queue[2 * i + 1]
        digest = hashlib.sha256(oldest).hexdigest()[:16] if isinstance(oldest, bytes) else ""
        readings[queue] = QueueReading(length if isinstance(length, int) else 0, digest)
    return RedisSnapshot(parse_client_list(listed if isinstance(listed, bytes) else b""),
                         readings, unacked if isinstance(unacked, int) else 0)


def _endpoint(addr: str) -> Endpoint:
    ip, _, port = addr.rpartition(":")
    return ip.strip("[]"), int(port) if port.isdigit() else 0


def own_clients(clients: list[dict[str, str]], endpoints: set[Endpoint]) -> list[dict[str, str]]:
    """The clients whose addr= is one of `endpoints`. Where Redis sees none of the
    endpoints' addresses (the connections leave through Docker's masquerade to a remote
    Redis, which keeps the source port unless two collide) they are matched by port."""
    seen = {_endpoint(c.get("addr", "")): c for c in clients}
    exact = [seen[e] for e in sorted(endpoints) if e in seen]
    if exact or not endpoints:
        return exact
    ports = {port for _, port in endpoints}
    return [c for (_, port), c in seen.items() if port in ports]


def reading(redis: str, shot: RedisSnapshot, work: RedisWork, clients: list[dict[str, str]],
            shared: bool = False) -> WorkReading:
    consuming = [c for c in clients if c.get("cmd") == work.consume]
    idle = [0 if BLOCKED in c.get("flags", "") else int(c.get("idle", "0") or 0)
            for c in consuming]
    return WorkReading(
        redis=redis,
        queues={q: shot.queues[q] for q in work.queues if q in shot.queues},
        consuming_idle=min(idle) if idle else None,
        broadcast=any(c.get("psub", "0") != "0" for c in clients),
        reserved=shot.reserved,
        shared=shared,
    )


@dataclass(frozen=True)
class Consumer:
    """A running container of a worker that takes work from Redis."""

    unit: str
    pid: int  # the container's main process: its network namespace
    work: RedisWork
    address: Address
    shared: bool  # on the host's network
    # Whether its connections are wanted: work in its queues has waited long enough that a
    # verdict may come this tick (the agent knows the wait; this module reads one tick).
    judged: bool = True

    def queue_keys(self) -> list[str]:
        """The names the policy's History.queues knows its queues by."""
        return [queue_key(f"{self.address[0]}:{self.address[1]}", q) for q in self.work.queues]


def read_work(consumers: list[Consumer], password: str = "",
              connections: Callable[[int, Address], set[Endpoint]] = connections_to,
              ask_redis: Callable[..., RedisSnapshot] = snapshot) -> dict[str, WorkReading]:
    """Each consumer's reading, keyed by unit; a consumer whose Redis could not be asked
    has none (the reachability probe reports an outage).

    Its connections are looked for only while work waits in one of its queues and the
    consumer is `judged` (the policy judges them only then: an empty or moving queue is a
    live one), and the host's table only once for all the containers on the host's
    network: the TCP table is the expensive part of a reading (host/sockets.py)."""
    found: dict[str, WorkReading] = {}
    by_address: dict[Address, list[Consumer]] = {}
    for consumer in consumers:
        by_address.setdefault(consumer.address, []).append(consumer)
    for address, sharing in sorted(by_address.items()):
        queues = sorted({q for c in sharing for q in c.work.queues})
        try:
            shot = ask_redis(address, queues, sharing[0].work.reserved, password)
        except RedisError:
            continue
        name = f"{address[0]}:{address[1]}"
        host_table: set[Endpoint] | None = None
        for consumer in sharing:
            mine: list[dict[str, str]] = []
            waiting = any(shot.queues[q].waiting for q in consumer.work.queues
                          if q in shot.queues)
            if waiting and consumer.judged:
                if not consumer.shared:
                    mine = own_clients(shot.clients, connections(consumer.pid, address))
                else:
                    if host_table is None:
                        host_table = connections(consumer.pid, address)
                    mine = own_clients(shot.clients, host_table)
            found[consumer.unit] = reading(name, shot, consumer.work, mine, consumer.shared)
    return found
