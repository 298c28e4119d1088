"""The shipped hardening on the booted release's live systemd (252 on Debian 12, 257 on 13).

test_agent.py runs the agent's whole repertoire (re-arm, restart, orphan removal, memory
limit) under these same units; here: the release booted is the one selected, the units
are rated as shipped, and the running processes hold no privilege.
"""

from __future__ import annotations

import re

import pytest

from .host import Host
from .operator import TOOL, WORKER_UNITS, install, start_all, uninstall_everything, write_env
from .releases import selected
from .sandbox import Sandbox

AGENT = "tracardi-agent.service"
AGENT_MAX = 2.0  # what issue 15 asks
WORKER_MAX = 2.5  # docs/design.md: 2.3; no file-system protection on the restart path


@pytest.fixture
def host(sandbox: Host):
    write_env(sandbox)
    yield sandbox
    uninstall_everything(sandbox)


def exposure(host: Host, unit: str) -> float:
    out = host.run(f"systemd-analyze security --no-pager {unit}").stdout
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
    assert found, out
    return float(found[1])


def status_of(host: Host, pid: str) -> dict[str, str]:
    lines = host.run(f"cat /proc/{pid}/status").stdout.splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_the_sandbox_runs_the_selected_release(sandbox: Sandbox) -> None:
    release = selected()
    os_release = sandbox.run(". /etc/os-release && echo $VERSION_ID $VERSION_CODENAME").stdout
    assert os_release.split() == [release.version, release.name]
    systemd = sandbox.run("systemctl --version").stdout.split()[1]
    assert int(systemd) == release.systemd
    version = sandbox.run(f"{TOOL} --version").stdout
    assert version.startswith("tracardi-systemd, version ")


def test_installed_units_are_rated_as_shipped(host: Sandbox) -> None:
    install(host)
    scores = {unit: exposure(host, unit) for unit in [AGENT, *WORKER_UNITS]}
    print(f"systemd {selected().systemd}: {scores}")
    assert scores[AGENT] <= AGENT_MAX
    for unit in WORKER_UNITS:
        assert scores[unit] <= WORKER_MAX, unit


def test_the_agent_and_the_docker_clients_run_without_privileges(host: Host) -> None:
    install(host)
    start_all(host)
    host.wait_until(f"systemctl is-active -q {AGENT}", timeout=30)
    host.wait_until("test -s /run/tracardi-systemd/agent-state.json", timeout=30)
    agent = host.run(f"systemctl show -p MainPID --value {AGENT}").stdout.strip()
    # The worker's main process is `docker run` (exec'd by /bin/sh for the license).
    client = host.run("systemctl show -p MainPID --value tracardi-scheduler").stdout.strip()
    assert host.run(f"cat /proc/{client}/comm").stdout.strip() == "docker"

    for pid in (agent, client):
        status = status_of(host, pid)
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, pid
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", pid
    # The agent keeps the host's network (it probes Redis and Elasticsearch); a docker
    # client has none, and still runs its container.
    host_net = host.run("readlink /proc/1/ns/net").stdout
    assert host.run(f"readlink /proc/{agent}/ns/net").stdout == host_net
    assert host.run(f"readlink /proc/{client}/ns/net").stdout != host_net
    # ... runs in a user namespace of its own, with no file-system protection that would
    # walk the host's mount table at each restart (docs/design.md, "The restart path").
    assert (host.run(f"readlink /proc/{client}/ns/user").stdout
            != host.run("readlink /proc/1/ns/user").stdout)
    shown = host.run("systemctl show -p ProtectSystem -p ProtectHome -p PrivateTmp "
                     "-p PrivateDevices -p ProtectKernelTunables -p ProtectProc "
                     "tracardi-scheduler").stdout.split()
    assert sorted(shown) == ["PrivateDevices=no", "PrivateTmp=no", "ProtectHome=no",
                             "ProtectKernelTunables=no", "ProtectProc=default",
                             "ProtectSystem=no"]
    # Its one writable place is systemd's, and goes when the agent stops.
    assert host.run(f"nsenter -t {agent} -m touch /etc/tracardi/x", check=False).returncode != 0
    host.run(f"systemctl stop {AGENT}")
    host.wait_until("test ! -e /run/tracardi-systemd")
