"""The container runtimes the workers may run on, and what the commands and the agent need
to know of each: one table (the unit files' side is render/units.py's RUNTIME_UNITS)."""

from __future__ import annotations

from dataclasses import dataclass

from tracardi_systemd.host.engine import DEFAULT_SOCKET, PODMAN_SOCKET
from tracardi_systemd.names import DEFAULT_PODMAN, DOCKER_UNIT


@dataclass(frozen=True)
class ContainerRuntime:
    client: str | None  # the program the units run; None: the --docker option's
    socket: str  # its Docker-compatible Engine API
    # The unit whose stop takes every worker down, and whose outage holds restarts. Podman
    # has none: each container's conmon lives in its own unit, and podman.socket starts the
    # API's service at the first call.
    daemon: str | None
    data_dir: str  # where its images and containers live: the agent watches its disk
    # Its health check kills a failing container (Quadlet's HealthOnFailure=kill) and the
    # unit starts it again: the agent reports the verdict and does not restart it too.
    kills_not_live: bool

    def client_or(self, docker: str) -> str:
        """The client program, given the --docker option."""
        return self.client or docker


RUNTIME_HOSTS = {
    "docker": ContainerRuntime(None, DEFAULT_SOCKET, DOCKER_UNIT, "/var/lib/docker", False),
    "podman": ContainerRuntime(DEFAULT_PODMAN, PODMAN_SOCKET, None,
                               "/var/lib/containers/storage", True),
}
