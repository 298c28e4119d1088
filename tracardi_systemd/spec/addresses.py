"""Where a worker's Redis, Elasticsearch, MySQL and Pulsar are, read as that worker reads
its settings (the catalog says how), and whether they accept a TCP connection.

Validation, the agent and `status` all read addresses here, so the address the agent
probes is the one the worker connects to.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tracardi_systemd.spec.catalog import ELASTICSEARCH, MYSQL, PULSAR, REDIS, RedisReading, Worker

DEFAULT_REDIS_PORT = 6379
DEFAULT_ELASTIC_PORT = 9200  # the Elasticsearch client's default for both schemes
DEFAULT_MYSQL_PORT = 3306
DEFAULT_PULSAR_PORT = 6650

Address = tuple[str, int]


@dataclass(frozen=True)
class Dependency:
    name: str  # as the journal and STATUS= say it: "redis 10.0.0.7:6379", "elasticsearch"
    addresses: tuple[Address, ...]  # reachable when any of them accepts a connection
    # The worker's container has a loopback of its own (any network but the host's): a
    # loopback address is the container itself, whatever listens there on the host.
    own_loopback: bool = False

    def seen_by_worker(self) -> tuple[Address, ...]:
        """The addresses where the worker may find the service."""
        if not self.own_loopback:
            return self.addresses
        return tuple(a for a in self.addresses if not is_loopback(a[0]))


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def has_own_loopback(network: str | None) -> bool:
    """Whether a container on `network` (None: Docker's default bridge) has its own loopback."""
    return network != "host"


def loopback_settings(settings: dict[str, str], keys: Iterable[str]) -> list[str]:
    """Those of `keys` (REDIS_HOST, ELASTIC_HOST, MYSQL_HOST, PULSAR_HOST, PULSAR_API) that
    name a loopback address."""
    hosts = {
        "REDIS_HOST": lambda: [split_redis_host(settings.get("REDIS_HOST", ""))[0]],
        "ELASTIC_HOST": lambda: [host for host, _ in elastic_nodes(settings)],
        "MYSQL_HOST": lambda: [settings.get("MYSQL_HOST", "")],
        "PULSAR_HOST": lambda: [a[0] for a in [pulsar_address(settings)] if a],
        "PULSAR_API": lambda: [_url_host(settings.get("PULSAR_API", ""))],
    }
    return [key for key in dict.fromkeys(keys)
            if key in hosts and settings.get(key) and any(is_loopback(h) for h in hosts[key]())]


def _url_host(value: str) -> str:
    try:
        return urlsplit(value.strip()).hostname or ""
    except ValueError:
        return ""


def split_redis_host(host: str) -> tuple[str, str]:
    """REDIS_HOST as Tracardi splits it: the scheme stripped, then name and text after ':'."""
    name, _, after = host.split("://", 1)[-1].partition(":")
    return name, after


def redis_address(settings: dict[str, str], reading: RedisReading) -> Address | None:
    host = settings.get("REDIS_HOST", "").strip()
    if not host:
        return None
    name, after = split_redis_host(host)
    from_host = reading.port_from == "REDIS_HOST"
    port = after if from_host else settings.get("REDIS_PORT", "").strip()
    return name, int(port) if port.isdigit() else DEFAULT_REDIS_PORT


def elastic_entries(value: str) -> list[str]:
    """ELASTIC_HOST: a comma-separated list of URLs or (Helm's way) bare host names."""
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def elastic_url(entry: str, settings: dict[str, str]) -> str:
    """An entry as the client connects to it: a bare host takes ELASTIC_SCHEME and
    ELASTIC_PORT (Tracardi's Helm charts write ELASTIC_HOST=elastic-svc that way)."""
    if "://" in entry:
        return entry
    scheme = settings.get("ELASTIC_SCHEME", "").strip() or "http"
    port = settings.get("ELASTIC_PORT", "").strip()
    has_port = ":" in entry.rsplit("]", 1)[-1]
    return f"{scheme}://{entry}" + (f":{port}" if port and not has_port else "")


def elastic_nodes(settings: dict[str, str]) -> list[Address]:
    nodes = []
    for entry in elastic_entries(settings.get("ELASTIC_HOST", "")):
        try:
            parts = urlsplit(elastic_url(entry, settings))
            port = parts.port or DEFAULT_ELASTIC_PORT
        except ValueError:
            continue
        if parts.hostname:
            nodes.append((parts.hostname, port))
    return nodes


def _host_port(settings: dict[str, str], host_key: str, port_key: str,
               default: int) -> Address | None:
    host = settings.get(host_key, "").strip()
    if not host:
        return None
    port = settings.get(port_key, "").strip()
    return host, int(port) if port.isdigit() else default


def pulsar_address(settings: dict[str, str]) -> Address | None:
    """PULSAR_HOST is a URL: pulsar://host:port (pulsar+ssl:// alike)."""
    value = settings.get("PULSAR_HOST", "").strip()
    if not value:
        return None
    try:
        parts = urlsplit(value if "://" in value else f"pulsar://{value}")
        port = parts.port or DEFAULT_PULSAR_PORT
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def dependencies_of(worker: Worker, settings: dict[str, str],
                    network: str | None = "host") -> list[Dependency]:
    """The services `worker` needs, at the addresses it will connect to from a container on
    `network` (None: Docker's default bridge)."""
    found = []
    own = has_own_loopback(network)
    for kind in worker.dependencies:
        if kind == ELASTICSEARCH:
            nodes = elastic_nodes(settings)
            if nodes:
                found.append(Dependency(ELASTICSEARCH, tuple(nodes), own))
            continue
        address = {
            REDIS: lambda: redis_address(settings, worker.redis),
            MYSQL: lambda: _host_port(settings, "MYSQL_HOST", "MYSQL_PORT", DEFAULT_MYSQL_PORT),
            PULSAR: lambda: pulsar_address(settings),
        }[kind]()
        if address:
            found.append(Dependency(f"{kind} {address[0]}:{address[1]}", (address,), own))
    return found


SockAddr = tuple  # as getaddrinfo gives it: (host, port) or (host, port, flow, scope)
Lookup = Callable[[str, int], list[tuple[int, SockAddr]]]


def _getaddrinfo(host: str, port: int) -> list[tuple[int, SockAddr]]:
    return [(family, sockaddr) for family, _, _, _, sockaddr
            in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class Resolver:
    """Host names resolved within a deadline, whatever the DNS does.

    getaddrinfo takes no timeout (create_connection's does not bound it: a dead resolver
    holds it for the resolv.conf timeouts of every server and attempt). Each name is
    looked up in a daemon thread that is waited for `deadline` seconds at most; a name
    whose lookup is still running is not looked up again until it returns, so a hung
    resolver costs one thread per name, not one per cycle. Past the deadline the last
    answer for the name is used, or none: unreachable, as for the worker without DNS.
    """

    def __init__(self, deadline: float = 1.0, lookup: Lookup = _getaddrinfo):
        self.deadline, self.lookup = deadline, lookup
        self.known: dict[Address, list[tuple[int, SockAddr]]] = {}
        self.running: dict[Address, threading.Thread] = {}
        self.lock = threading.Lock()

    def resolve(self, address: Address,
                deadline: float | None = None) -> list[tuple[int, SockAddr]]:
        literal = _ip_literal(address)
        if literal:
            return literal
        with self.lock:
            thread = self.running.get(address)
            if thread is None:
                thread = threading.Thread(target=self._look_up, args=(address,), daemon=True,
                                          name=f"resolve {address[0]}")
                self.running[address] = thread
                thread.start()
        thread.join(self.deadline if deadline is None else min(deadline, self.deadline))
        with self.lock:
            return self.known.get(address, [])

    def _look_up(self, address: Address) -> None:
        found: list[tuple[int, SockAddr]] | None = None
        try:
            found = self.lookup(*address)
        except socket.gaierror as exc:
            # No such name: forget the last answer. A resolver that failed (EAI_AGAIN:
            # no server answered) says nothing about the name: keep it.
            found = [] if exc.errno == socket.EAI_NONAME else None
        except (OSError, UnicodeError):
            found = []
        with self.lock:
            if found:
                self.known[address] = found
            elif found is not None:
                self.known.pop(address, None)
            del self.running[address]


RESOLVER = Resolver()


def _ip_literal(address: Address) -> list[tuple[int, SockAddr]]:
    """An IP address needs no lookup (and no thread)."""
    host, port = address
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return []
    if ip.version == 6:
        return [(socket.AF_INET6, (str(ip), port, 0, 0))]
    return [(socket.AF_INET, (str(ip), port))]


def reachable(address: Address, timeout: float = 1.0, resolver: Resolver = RESOLVER) -> bool:
    """Whether the address accepts a TCP connection within `timeout`, name lookup
    included."""
    deadline = time.monotonic() + timeout
    for family, sockaddr in resolver.resolve(address, timeout):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            with socket.socket(family, socket.SOCK_STREAM) as connection:
                connection.settimeout(left)
                connection.connect(sockaddr)
                return True
        except OSError:
            continue
    return False


def probe(dependencies: Iterable[Dependency], timeout: float = 1.0,
          budget: float = 5.0, resolver: Resolver = RESOLVER) -> dict[str, bool]:
    """Reachability of each dependency as its workers' containers would reach it, probed
    once however many workers share it, all within `budget` seconds: what is not reached
    by then counts as unreachable."""
    unique = {d.name: d for d in dependencies}
    end = time.monotonic() + budget
    found = {}
    for name, dependency in sorted(unique.items()):
        found[name] = False
        for address in dependency.seen_by_worker():
            left = end - time.monotonic()
            if left <= 0:
                break
            if reachable(address, min(timeout, left), resolver):
                found[name] = True
                break
    return found
