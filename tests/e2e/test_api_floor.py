"""Docker 29's API floor on a real host: dockerd started with DOCKER_MIN_API_VERSION=1.44
refuses every client that speaks an Engine API older than 1.44, in the words Docker 29
uses, as a drop-in of docker.service sets it. install --start, the agent (READY, a killed
worker, a stray container), status and upgrade's gate must all work against it: each
negotiates its API version with dockerd (tracardi_systemd/host/engine.py) instead of the
1.41 it pinned, which this daemon refuses (issue 21).

Only Debian 13's dockerd 26.1 knows the variable; Debian 12's 20.10 ignores it (its
MinAPIVersion stays 1.12), so this module runs in the trixie tier only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .host import Host
from .operator import (
    TOOL,
    WORKER_UNITS,
    install,
    tool,
    uninstall_everything,
    wait_entries,
    wait_running,
    wait_running_tag,
    write_env,
)
from .sandbox import Sandbox
from .standin import build_standin_images, start_fake_elasticsearch

pytestmark = pytest.mark.releases(
    "trixie", reason="dockerd 20.10 (Debian 12) does not know DOCKER_MIN_API_VERSION")

FLOOR = "1.44"  # Docker 29's MinAPIVersion
DROP_IN = "/etc/systemd/system/docker.service.d/min-api-version.conf"
INTERVAL = 2  # the agent's cycle
NEXT = "0.8.2"  # the tag upgrade moves to
CONTAINER_DIED = "86111eadd1bf45f4ac7bbe451ae331c4"
ORPHAN_REMOVED = "f772a3e336d344dabbbc0ed6f1d5b38b"


def restart_docker(host: Host) -> None:
    # docker.service allows 3 starts a minute: the session's other restarts (test_agent's,
    # test_engine's) must not make this one, or this one them, hit the limit.
    reset = "systemctl reset-failed docker.service"
    host.run(f"{reset} && systemctl daemon-reload && systemctl restart docker.service",
             timeout=120)
    host.wait_until("docker info >/dev/null 2>&1", timeout=60)
    host.run(reset)


@contextmanager
def api_floor(host: Host) -> Iterator[None]:
    """dockerd restarted under the floor; at the end, whatever was installed is removed and
    dockerd restarted without it. The VM tier uses it too."""
    host.run(f"mkdir -p $(dirname {DROP_IN}) && printf '[Service]\\nEnvironment="
             f"DOCKER_MIN_API_VERSION={FLOOR}\\n' > {DROP_IN}")
    restart_docker(host)
    try:
        yield
    finally:
        uninstall_everything(host)
        host.run(f"rm -f {DROP_IN}")
        restart_docker(host)


@pytest.fixture(scope="module")
def floor_host(sandbox: Sandbox):
    """The session's host with dockerd restarted under the floor; restored afterwards."""
    build_standin_images(sandbox, tag=NEXT)
    start_fake_elasticsearch(sandbox)
    with api_floor(sandbox):
        yield sandbox


@pytest.fixture
def host(floor_host: Sandbox):
    write_env(floor_host)
    yield floor_host
    uninstall_everything(floor_host)


def since_now(host: Sandbox) -> str:
    since = host.run("date +%s").stdout.strip()
    time.sleep(1)  # journalctl --since has a resolution of one second
    return since


def test_the_daemon_refuses_api_141_as_docker_29_does(floor_host: Host) -> None:
    versions = floor_host.run("docker version --format "
                              "'{{.Server.Version}} {{.Server.APIVersion}} "
                              "{{.Server.MinAPIVersion}}'").stdout.split()
    print(f"dockerd {versions[0]}: API {versions[1]}, MinAPIVersion {versions[2]}")
    assert versions[2] == FLOOR

    old = floor_host.run("DOCKER_API_VERSION=1.41 docker ps", check=False)

    assert old.returncode != 0
    assert f"client version 1.41 is too old. Minimum supported API version is {FLOOR}" \
        in old.stderr


def test_install_start_the_agent_and_status_work_against_it(host: Sandbox) -> None:
    since = since_now(host)
    started = time.monotonic()

    install(host, f"--agent-interval {INTERVAL} --start")  # waits for the agent's READY

    installed = time.monotonic() - started
    host.wait_until("systemctl is-active -q tracardi-agent", timeout=30)
    ids = {unit: wait_running(host, unit.removesuffix(".service")) for unit in WORKER_UNITS}
    print(f"install --start: {installed:.1f} s; every worker running after "
          f"{time.monotonic() - started:.1f} s")

    # A killed worker: back, and the agent heard of its death through the event stream.
    host.run("docker kill tracardi-scheduler")
    wait_running(host, "tracardi-scheduler", timeout=60,
                 other_than=ids["tracardi-scheduler.service"])
    died = wait_entries(host, f"--since @{since}", f"MESSAGE_ID={CONTAINER_DIED}",
                        "TRACARDI_CONTAINER=tracardi-scheduler")
    assert "died (exit status 137)" in died[-1]["MESSAGE"]

    # A container no unit owns: the agent lists it and removes it through the Engine API.
    host.run("docker run -d --name ghost --network host --label tracardi.managed=true "
             "--label tracardi.unit=tracardi-ghost.service "
             "tracardi/com-tracardi-scheduler-worker:0.8.1")
    host.wait_until("! docker inspect ghost >/dev/null 2>&1", timeout=3 * INTERVAL + 30)
    wait_entries(host, f"--since @{since}", f"MESSAGE_ID={ORPHAN_REMOVED}",
                 "TRACARDI_CONTAINER=ghost")

    # status sees every container (status exits 0 only when everything is healthy).
    report = json.loads(host.wait_until(f"{TOOL} status --json", timeout=90))
    assert {row["unit"]: row["container"] for row in report["workers"]} == dict.fromkeys(
        WORKER_UNITS, "running")
    # The agent never failed a cycle nor was restarted by systemd.
    assert host.run("systemctl show -p NRestarts --value tracardi-agent").stdout.strip() == "0"
    cycles = host.run(f"journalctl -q -o cat --since @{since} -u tracardi-agent").stdout
    assert "cycle failed" not in cycles and "HTTP 400" not in cycles
    print(f"whole test: {time.monotonic() - started:.1f} s")


def test_upgrade_gates_against_it(host: Sandbox) -> None:
    install(host, "--start")
    for unit in WORKER_UNITS:
        wait_running(host, unit.removesuffix(".service"))
    started = time.monotonic()

    result = tool(host, f"upgrade --image-tag {NEXT} --pull missing --window 2 "
                  "--liveness-timeout 30 --json", check=False, timeout=300)

    print(f"upgrade of {len(WORKER_UNITS)} workers: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["result"], report["to_tag"]) == ("done", NEXT)
    wait_running_tag(host, NEXT)
