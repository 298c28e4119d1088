"""The TCP connections of a process's network namespace, read from /proc/<pid>/net/tcp{,6}.

These files list every socket of the namespace the process lives in, are readable without
ptrace rights (the agent has none: no capability, its own user namespace), and cost one
read each. For a container on its own network (Docker's default bridge) that is exactly
the container's connections; for one on `--network host` it is every connection of the
host (docs/design.md, "Work-based liveness").
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

ESTABLISHED = "01"
Endpoint = tuple[str, int]  # (ip, port) as Redis' CLIENT LIST writes its addr=


def _ip(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # The kernel prints each 32-bit word in host (little-endian) order.
    ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(ordered)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def parse_tcp_table(text: str, remote_port: int) -> set[Endpoint]:
    """The local endpoints of the established connections to `remote_port` in a table."""
    found = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        local, remote = fields[1], fields[2]
        if int(remote.rsplit(":", 1)[1], 16) != remote_port:
            continue
        address, port = local.rsplit(":", 1)
        found.add((_ip(address), int(port, 16)))
    return found


def connections_to(pid: int, remote: tuple[str, int], proc: Path = Path("/proc")) -> set[Endpoint]:
    """Local endpoints of the namespace's established connections to `remote`'s port;
    empty when the process is gone. Only the table of `remote`'s address family is read:
    the kernel walks its whole connection hash table for each (about 1.4 ms here), and a
    client connecting to an IPv4 address opens an IPv4 socket."""
    found: set[Endpoint] = set()
    host, remote_port = remote
    tables: tuple[str, ...]
    try:
        tables = ("tcp6",) if ipaddress.ip_address(host).version == 6 else ("tcp",)
    except ValueError:
        tables = ("tcp", "tcp6")  # a name: either family
    for table in tables:
        try:
            found |= parse_tcp_table((proc / str(pid) / "net" / table).read_text(), remote_port)
        except OSError:
            continue
    return found
