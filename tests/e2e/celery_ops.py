"""What a test does with the real update worker (celery_image.py) on a sandbox host.

Queue a task from outside the worker, see it consumed in Redis, ask the worker for a
ping, break Redis for a while, and read the figures a liveness check could use.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from .celery_image import APP, image_ref
from .sandbox import DOCKER, Sandbox

UNIT = "tracardi-update.service"
CONTAINER = "tracardi-update"
REDIS_CLI = "redis-cli -h 127.0.0.1 -p 6379"
QUEUE = "celery"  # the worker's only queue (Celery's default)
RECONNECTED = "Connected to redis://"


def one_off(host: Sandbox, python: str, *args: str, env: dict[str, str] | None = None,
            engine: str = DOCKER) -> str:
    """Run a python snippet in a throw-away container of the worker image (argv: args)."""
    env = {"REDIS_HOST": "127.0.0.1"} if env is None else env
    options = " ".join(f"-e {shlex.quote(f'{k}={v}')}" for k, v in env.items())
    argv = " ".join(shlex.quote(a) for a in args)
    return host.run(
        f"{engine} run --rm --network host {options} "
        f"{image_ref(engine)} python -c {shlex.quote(python)} {argv}"
    ).stdout.strip()


def queue_touch(host: Sandbox, key: str, engine: str = DOCKER) -> str:
    """Queue touch(key) as a Tracardi API would (`.delay()` on the broker); the task id."""
    return one_off(
        host, f"import sys; from {APP} import touch; print(touch.delay(sys.argv[1]).id)", key,
        engine=engine,
    )


def queue_holds(host: Sandbox, seconds: float, count: int) -> None:
    """Queue `count` hold(seconds) tasks: long tasks that fill the pool and the prefetch."""
    one_off(host, f"import sys; from {APP} import hold\n"
            "for _ in range(int(sys.argv[2])): hold.delay(float(sys.argv[1]))",
            str(seconds), str(count))


def control(host: Sandbox, *args: str, engine: str = DOCKER) -> str:
    """`celery control ...` from a throw-away container, as an operator would run it."""
    argv = " ".join(shlex.quote(a) for a in args)
    return host.run(
        f"{engine} run --rm --network host -e REDIS_HOST=127.0.0.1 {image_ref(engine)} "
        f"celery -A {APP} control {argv}", timeout=120
    ).stdout


def entries_since(host: Sandbox, since: str, message_id: str, unit: str = "") -> list[str]:
    """The agent's journal entries of one MESSAGE_ID since `since` (seconds of the epoch)."""
    match = f" TRACARDI_UNIT={unit}" if unit else ""
    return host.run(f"journalctl -q --since @{since} MESSAGE_ID={message_id}{match} -o cat"
                    ).stdout.splitlines()


def consumed_within(host: Sandbox, key: str, timeout: float) -> float | None:
    """Seconds until the task that touches key has run (its key is set), or None."""
    started = time.monotonic()
    while True:
        value = host.run(f"{REDIS_CLI} --raw get {shlex.quote(key)}").stdout.strip()
        elapsed = time.monotonic() - started
        if value:
            return elapsed
        if elapsed > timeout:
            return None
        time.sleep(0.2)


def node_name(host: Sandbox, container: str = CONTAINER, engine: str = DOCKER) -> str:
    """celery@<hostname>: the name the worker answers to (the host's under --network host)."""
    hostname = host.run(f"{engine} inspect -f '{{{{.Config.Hostname}}}}' {container}")
    return f"celery@{hostname.stdout.strip()}"


def ping_command(node: str, container: str = CONTAINER, timeout: float = 5) -> str:
    return (
        f"{DOCKER} exec {container} celery -A {APP} inspect ping "
        f"-d {shlex.quote(node)} --timeout {timeout:g}"
    )


def inspect_ping(host: Sandbox, container: str = CONTAINER, timeout: float = 5) -> bool:
    """Whether the worker answers `celery inspect ping` (run inside its container)."""
    node = node_name(host, container)
    result = host.run(ping_command(node, container, timeout), check=False, timeout=timeout + 60)
    return result.returncode == 0 and f"{node}: OK" in result.stdout


def invocation_log(host: Sandbox, unit: str = UNIT) -> str:
    """The journal of the unit's current run only."""
    run = host.run(f"systemctl show -p InvocationID --value {unit}").stdout.strip()
    return host.run(f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={run}").stdout


def wait_ready(host: Sandbox, unit: str = UNIT, timeout: float = 60) -> None:
    """Until the worker of the unit's current run logs `celery@... ready.`."""
    deadline = time.monotonic() + timeout
    while not re.search(r"celery@\S+ ready\.", invocation_log(host, unit)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{unit} not ready after {timeout:.0f} s:\n"
                                 + invocation_log(host, unit)[-3000:])
        time.sleep(0.5)


def redis_outage(host: Sandbox, seconds: float) -> None:
    """Stop Debian's redis-server for `seconds`, start it and wait until it answers."""
    host.run("systemctl stop redis-server")
    time.sleep(seconds)  # the outage itself: its length is what the test is about
    host.run("systemctl start redis-server")
    host.wait_until(f"{REDIS_CLI} ping | grep -qx PONG", timeout=15)


def wait_reconnected(host: Sandbox, connects_before: int, unit: str = UNIT,
                     timeout: float = 60) -> float:
    """Seconds until the worker logs one more `Connected to redis://` than before."""
    started = time.monotonic()
    while invocation_log(host, unit).count(RECONNECTED) <= connects_before:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"no reconnection logged within {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def redis_outage_and_reconnect(host: Sandbox, seconds: float, unit: str = UNIT) -> float:
    """A Redis outage the worker lives through; seconds from Redis' return to reconnection."""
    before = invocation_log(host, unit).count(RECONNECTED)
    redis_outage(host, seconds)
    return wait_reconnected(host, before, unit)


def worker_ports(host: Sandbox, container: str = CONTAINER) -> set[int]:
    """Local TCP ports of the worker's main process (the child of docker-init)."""
    init = host.run(f"{DOCKER} inspect -f '{{{{.State.Pid}}}}' {container}").stdout.strip()
    main = host.run(f"pgrep -o -P {init}").stdout.strip()
    sockets = host.run("ss -tnpH state established").stdout.splitlines()
    return {
        int(line.split()[2].rsplit(":", 1)[1])
        for line in sockets
        if f"pid={main}," in line
    }


@dataclass(frozen=True)
class RedisView:
    """What Redis itself shows of a worker: a liveness check that runs nothing inside it."""

    brpop_blocked: int  # its connections blocked in BRPOP: a consumer asking for tasks
    brpop_idle: list[int]  # idle seconds of its connections whose last command was BRPOP
    pattern_subscribers: int  # its PSUBSCRIBE connections: the broadcast (pidbox) listener
    queue_length: int  # tasks waiting in the queue
    pidbox_bindings: int  # members of _kombu.binding.celery.pidbox (kept across restarts)

    @property
    def consuming(self) -> bool:
        """Kombu re-issues BRPOP (1 s timeout) while it consumes, and listens for pings."""
        asking = self.brpop_blocked > 0 or any(idle <= 2 for idle in self.brpop_idle)
        return asking and self.pattern_subscribers > 0


def redis_clients(host: Sandbox) -> list[dict[str, str]]:
    lines = host.run(f"{REDIS_CLI} client list").stdout.splitlines()
    return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in lines]


def redis_view(host: Sandbox, ports: set[int]) -> RedisView:
    """CLIENT LIST, narrowed to the connections from `ports` (see worker_ports)."""
    mine = [c for c in redis_clients(host) if int(c["addr"].rsplit(":", 1)[1]) in ports]
    brpop = [c for c in mine if c.get("cmd") == "brpop"]
    return RedisView(
        brpop_blocked=sum("b" in c.get("flags", "") for c in brpop),
        brpop_idle=[int(c["idle"]) for c in brpop],
        pattern_subscribers=sum(c.get("psub", "0") != "0" for c in mine),
        queue_length=int(host.run(f"{REDIS_CLI} llen {QUEUE}").stdout.strip()),
        pidbox_bindings=int(
            host.run(f"{REDIS_CLI} scard _kombu.binding.celery.pidbox").stdout.strip()
        ),
    )


def heartbeats(host: Sandbox, seconds: float = 5) -> int:
    """Worker heartbeat events Redis relays in `seconds` (Celery sends one every 2 s)."""
    out = host.run(
        f"timeout {seconds:g} {REDIS_CLI} psubscribe '*' || true", timeout=seconds + 30
    ).stdout
    # redis-cli prints each message as: pmessage, pattern, channel, payload.
    return sum(line.endswith("celeryev/worker.heartbeat") for line in out.splitlines())


def cgroup_memory(host: Sandbox, container: str = CONTAINER) -> int:
    """Bytes the container's memory cgroup (v1) holds less its inactive file cache."""
    pid = host.run(f"{DOCKER} inspect -f '{{{{.State.Pid}}}}' {container}").stdout.strip()
    path = host.run(f"awk -F: '$2==\"memory\"{{print $3}}' /proc/{pid}/cgroup").stdout.strip()
    folder = f"/sys/fs/cgroup/memory{path}"
    usage = int(host.run(f"cat {folder}/memory.usage_in_bytes").stdout)
    inactive = host.run(f"awk '$1==\"total_inactive_file\"{{print $2}}' {folder}/memory.stat")
    return usage - int(inactive.stdout)


UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def docker_stats_memory(host: Sandbox, container: str = CONTAINER) -> int:
    """The usage `docker stats --no-stream` shows (e.g. '41.3MiB / 23.5GiB'), in bytes."""
    shown = host.run(
        f"{DOCKER} stats --no-stream --format '{{{{.MemUsage}}}}' {container}", timeout=60
    ).stdout.split("/")[0].strip()
    number, unit = re.fullmatch(r"([0-9.]+)\s*([A-Za-z]+)", shown).groups()
    return round(float(number) * UNITS[unit])


@dataclass(frozen=True)
class Cost:
    wall: float  # seconds
    client_cpu: float  # CPU seconds of the command's own process tree (e.g. the docker CLI)
    sandbox_cpu: float  # CPU seconds it caused inside the sandbox, less the idle rate


def cost_of(host: Sandbox, command: str, baseline: float = 2) -> Cost:
    """Wall time and CPU of one run of `command` inside the sandbox.

    The sandbox's cpuacct cgroup counts what the command makes dockerd, containerd, runc
    and the container do; the sandbox's idle rate, measured just before, is subtracted.
    The command's own processes (run through nsenter) stay outside that cgroup: /usr/bin/time
    counts them.
    """
    script = (
        "u() { cat /sys/fs/cgroup/cpuacct/cpuacct.usage; }; n() { date +%s%N; }; "
        f"a=$(u); t0=$(n); sleep {baseline:g}; b=$(u); t1=$(n); "
        f"/usr/bin/time -f '%U %S' -o /tmp/cost-of {command} >/dev/null 2>&1; "
        "c=$(u); t2=$(n); echo $a $t0 $b $t1 $c $t2 $(tail -n 1 /tmp/cost-of)"
    )
    a, t0, b, t1, c, t2, user, system = host.run(script, timeout=120).stdout.split()
    idle_rate = (int(b) - int(a)) / (int(t1) - int(t0))
    wall_ns = int(t2) - int(t1)
    return Cost(
        wall=wall_ns / 1e9,
        client_cpu=float(user) + float(system),
        sandbox_cpu=max(0.0, (int(c) - int(b) - idle_rate * wall_ns) / 1e9),
    )


@dataclass(frozen=True)
class Outage:
    seconds: float
    reconnected_after: float  # from Redis' return to the worker's "Connected" line
    consumed_after: float | None  # of a task queued once reconnected; None: not in time


def outage_and_task(host: Sandbox, key: str, seconds: float, bound: float) -> Outage:
    """A Redis outage of `seconds`, then touch(key) queued: consumed within `bound` s?"""
    reconnected = redis_outage_and_reconnect(host, seconds)
    queue_touch(host, key)
    return Outage(seconds, reconnected, consumed_within(host, key, bound))


def outages_until_hung(host: Sandbox, seconds: float, attempts: int, bound: float,
                       key_prefix: str = "after-outage") -> tuple[str | None, list[Outage]]:
    """Redis outages until a task queued after one is not consumed within `bound` s.

    Whether an outage hangs kombu 5.3's Redis transport is a race with Python's garbage
    collector (see tests/e2e/README-celery.md): the first outages of a worker's life
    do not (here, the third 60 s outage did, every time).
    Returns the key of the stuck task (None if no outage hung the worker) and every outage.
    """
    outages = []
    for attempt in range(1, attempts + 1):
        key = f"{key_prefix}-{attempt}"
        outages.append(outage_and_task(host, key, seconds, bound))
        if outages[-1].consumed_after is None:
            return key, outages
    return None, outages
