"""Where the workers' Redis and Elasticsearch are, read as Tracardi 0.8.1 reads them, and
whether they accept a TCP connection."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

REDIS = "redis"
ELASTICSEARCH = "elasticsearch"
DEFAULT_REDIS_PORT = 6379


def split_redis_host(host: str) -> tuple[str, str]:
    """REDIS_HOST as Tracardi splits it: the scheme stripped, then name and text after ':'."""
    name, _, after = host.split("://", 1)[-1].partition(":")
    return name, after


def elastic_urls(value: str) -> list[str]:
    """ELASTIC_HOST: a comma-separated list of URLs."""
    return [url.strip() for url in value.split(",") if url.strip()]


def redis_address(values: dict[str, str]) -> tuple[str, int] | None:
    """Core config: the scheme is stripped, anything after ':' dropped, port from REDIS_PORT."""
    host = values.get("REDIS_HOST", "").strip()
    if not host:
        return None
    name, _ = split_redis_host(host)
    port = values.get("REDIS_PORT", "").strip()
    return name, int(port) if port.isdigit() else DEFAULT_REDIS_PORT


def elastic_addresses(values: dict[str, str]) -> list[tuple[str, int]]:
    addresses = []
    for url in elastic_urls(values.get("ELASTIC_HOST", "")):
        try:
            parts = urlsplit(url)
            port = parts.port or 9200  # the Elasticsearch client's default for both schemes
        except ValueError:
            continue
        if parts.hostname:
            addresses.append((parts.hostname, port))
    return addresses


def reachable(address: tuple[str, int], timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def probe(values: dict[str, str], wanted: set[str], timeout: float = 1.0) -> dict[str, bool]:
    """Reachability of each wanted dependency; Elasticsearch counts as up if any node is."""
    result = {}
    redis = redis_address(values)
    if REDIS in wanted and redis:
        result[REDIS] = reachable(redis, timeout)
    nodes = elastic_addresses(values)
    if ELASTICSEARCH in wanted and nodes:
        result[ELASTICSEARCH] = any(reachable(node, timeout) for node in nodes)
    return result
