"""The Engine API client against the sandbox's real dockerd (20.10 on Debian 12, 26.1 on 13).

The client runs in the test process and reaches the sandbox's socket through its root
directory (/proc/<its PID 1>/root/run/docker.sock): the same socket, the same dockerd.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tracardi_systemd.host.engine import Engine, EngineError, EventStream, StreamClosed

from .sandbox import DOCKER, INSIDE_ENV, Sandbox

LABEL = "e2e.engine=1"
IMAGE = "tracardi/com-tracardi-scheduler-worker:0.8.1"


@pytest.fixture
def engine(sandbox: Sandbox) -> Iterator[Engine]:
    yield Engine(f"/proc/{sandbox.pid}/root/run/docker.sock", timeout=30)
    sandbox.run(f"ids=$({DOCKER} ps -aq --filter label={LABEL}); "
                f'[ -z "$ids" ] || {DOCKER} rm -f $ids >/dev/null')


def run_labelled(sandbox: Sandbox, name: str, *flags: str) -> str:
    return sandbox.run(f"{DOCKER} run -d --network host --init --label {LABEL} "
                       f"--name {name} {' '.join(flags)} {IMAGE}").stdout.strip()


def start_inside(sandbox: Sandbox, cmd: str) -> subprocess.Popen:
    """Like sandbox.run, without waiting for it."""
    argv = ["nsenter", "-t", str(sandbox.pid), "-m", "-p", "-r", "-w", "-n", "-C",
            "bash", "-c", cmd]
    return subprocess.Popen(argv, env=INSIDE_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_event(stream: EventStream, match: Callable[[dict], bool], timeout: float,
               seen: list[dict] | None = None) -> dict | None:
    """The first event that matches within `timeout`; every event read goes into `seen`."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = stream.poll(left)
        if event is not None:
            if seen is not None:
                seen.append(event)
            if match(event):
                return event
    return None


def is_(action: str, container: str) -> Callable[[dict], bool]:
    return lambda e: e.get("Action") == action and e.get("id") == container


def test_the_api_version_is_negotiated_with_the_real_dockerd(sandbox, engine) -> None:
    server = sandbox.run(f"{DOCKER} version --format "
                         "'{{.Server.Version}} {{.Server.APIVersion}}'").stdout.split()

    negotiated = engine.api_version

    print(f"dockerd {server[0]} speaks API {server[1]}: negotiated {negotiated}")
    # The newest daemon the tests boot speaks NEWEST_API_VERSION: each is spoken to in its own.
    assert negotiated == server[1]
    assert engine.version()["ApiVersion"] == server[1]


def test_containers_and_inspect_agree_with_the_docker_client(sandbox, engine) -> None:
    running = run_labelled(sandbox, "e2e-engine-list")
    stopped = run_labelled(sandbox, "e2e-engine-stopped", "-e STANDIN_EXIT_AFTER=0")
    sandbox.wait_until(f"{DOCKER} inspect -f '{{{{.State.Status}}}}' {stopped} | grep -qx exited")

    listed = {c["Id"]: c["State"] for c in engine.containers(LABEL)}
    pid = sandbox.run(f"{DOCKER} inspect -f '{{{{.State.Pid}}}}' {running}").stdout.strip()

    assert listed == {running: "running", stopped: "exited"}
    assert {c["Id"] for c in engine.containers(LABEL, all=False)} == {running}
    assert engine.inspect(running)["State"]["Pid"] == int(pid)
    assert engine.remove(stopped) is True
    assert engine.remove(stopped) is False
    with pytest.raises(EngineError) as raised:
        engine.inspect(stopped)
    assert raised.value.not_found


def test_a_killed_container_s_die_event_arrives_within_a_second(sandbox, engine) -> None:
    container = run_labelled(sandbox, "e2e-engine-kill")
    with engine.events(label=LABEL) as stream:
        started = time.monotonic()
        kill = start_inside(sandbox, f"{DOCKER} kill e2e-engine-kill")
        die = wait_event(stream, is_("die", container), timeout=10)
        arrived = time.monotonic() - started
    assert kill.wait(30) == 0, kill.stderr.read()

    assert die is not None, "no die event within 10 s"
    assert die["Actor"]["Attributes"]["exitCode"] == "137"
    assert arrived < 1.0, f"die arrived {arrived:.3f} s after docker kill started"


def test_a_dockerd_restart_is_a_disconnect_and_reconnect_delivers_the_gap(sandbox,
                                                                         engine) -> None:
    # dockerd stops containers when it stops (no live-restore here); --restart=always
    # brings this one back when it starts again.
    survivor = run_labelled(sandbox, "e2e-engine-survivor", "--restart=always")
    stream = engine.events(label=LABEL)
    seen: list[dict] = []

    restart = start_inside(sandbox, "systemctl restart docker")
    with pytest.raises(StreamClosed) as closed:
        wait_event(stream, lambda _: False, timeout=60, seen=seen)
    assert "dockerd closed the connection" in str(closed.value)
    assert restart.wait(60) == 0, restart.stderr.read()

    # The gap: dockerd is back and restarted survivor; it is killed before the reconnect.
    sandbox.wait_until(f"{DOCKER} inspect -f '{{{{.State.Running}}}}' {survivor} "
                       "| grep -qx true", timeout=60)
    killed_at = time.time_ns()
    sandbox.run(f"{DOCKER} kill e2e-engine-survivor")

    before_reconnect = len(seen)
    with stream.reconnect() as resumed:
        die = wait_event(resumed, lambda e: is_("die", survivor)(e)
                         and e["timeNano"] >= killed_at, timeout=10, seen=seen)
        seen += resumed.within(0.5)

    assert die is not None, "the die of the gap was not delivered after the reconnect"
    assert die["Actor"]["Attributes"]["exitCode"] == "137"
    gap = [e["Action"] for e in seen[before_reconnect:] if e["id"] == survivor]
    assert gap[:2] == ["start", "die"]  # dockerd's restart of it, then the kill
    keys = [(e["id"], e["Action"], e["timeNano"]) for e in seen]
    assert len(keys) == len(set(keys)), "an event came twice"
