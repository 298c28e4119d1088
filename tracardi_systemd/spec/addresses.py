"""Where a worker's Redis, Elasticsearch, MySQL and Pulsar are, read as that worker reads
its settings (the catalog says how), and whether they accept a TCP connection.

Validation, the agent and `status` all read addresses here, so the address the agent
probes is the one the worker connects to.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
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


def reachable(address: Address, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def probe(dependencies: Iterable[Dependency], timeout: float = 1.0) -> dict[str, bool]:
    """Reachability of each dependency as its workers' containers would reach it, probed
    once however many workers share it."""
    unique = {d.name: d for d in dependencies}
    return {name: any(reachable(a, timeout) for a in d.seen_by_worker())
            for name, d in sorted(unique.items())}
