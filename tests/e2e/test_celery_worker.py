"""The real update worker of Tracardi 0.8.1 (Celery 5.2.6) under the tool's unit.

Isolation: these tests boot a sandbox of their own (module scope) and import the real
image there as tracardi/update-worker:0.8.1; the session's sandbox, and every other test,
keeps the busybox stand-in under that name. Each test installs the update worker alone
(`--worker update`) with the agent, and leaves the sandbox as it found it.

Figures (costs, memory, outages) are printed: run with `-s` to see them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import time
from collections.abc import Iterator

import pytest

from .celery_image import APP, IMAGE, import_image, rootfs_tar
from .celery_ops import (
    CONTAINER,
    REDIS_CLI,
    UNIT,
    cgroup_memory,
    consumed_within,
    control,
    cost_of,
    docker_stats_memory,
    entries_since,
    heartbeats,
    inspect_ping,
    node_name,
    one_off,
    outages_until_hung,
    ping_command,
    queue_holds,
    queue_touch,
    redis_outage,
    redis_outage_and_reconnect,
    redis_view,
    wait_ready,
    worker_ports,
)
from .conftest import require_host, start_redis
from .operator import (
    TOOL,
    container,
    install,
    tool,
    uninstall_everything,
    wait_running,
    write_env,
)
from .sandbox import Sandbox
from .standin import TRACARDI_TAG

CONSUME_BOUND = 20  # seconds a healthy worker may take to run a queued task
OUTAGE = 60  # seconds without Redis
HANG_BOUND = 60  # seconds a task must stay unconsumed to call the worker hung
# The hang is a race with the garbage collector (README-celery.md); in every run here the
# third 60 s outage of a worker's life hung it, the first two never did.
OUTAGE_ATTEMPTS = 10
MiB = 2**20

# It boots the machine's own root and builds a bookworm image: the Debian 13 tier would
# repeat the same test on the same root.
pytestmark = pytest.mark.machine_release_only


def require_debootstrap() -> None:
    """Building the image needs Debian's debootstrap (scripts/test installs it)."""
    if shutil.which("debootstrap", path="/usr/sbin:/usr/bin") is None:
        message = "the real worker image cannot be built: apt-get install debootstrap"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def celery_host() -> Iterator[Sandbox]:
    """A sandbox of its own with the real worker image and Redis."""
    require_host()
    require_debootstrap()
    tar, seconds = rootfs_tar()  # before the boot: the sandbox sees the disk as it was
    built = f"built in {seconds:.1f} s" if seconds else "cached"
    print(f"\nworker rootfs ({built}): {tar}")
    host = Sandbox.boot()
    try:
        started = time.monotonic()
        import_image(host, tar)
        print(f"docker import: {time.monotonic() - started:.1f} s")
        start_redis(host)
        yield host
    finally:
        host.shutdown()


@pytest.fixture
def worker(celery_host: Sandbox) -> Iterator[Sandbox]:
    """The update worker and the agent installed and started, the worker ready."""
    host = celery_host
    host.run(f"{REDIS_CLI} flushall")
    write_env(host)
    install(host, "--worker update --agent-interval 2")
    host.run("systemctl start tracardi.target")
    wait_running(host, CONTAINER)
    wait_ready(host)
    yield host
    uninstall_everything(host)
    host.run("systemctl start redis-server")


REDIS_URL = "import tracardi.worker.celery_worker as w; print(w.redis_url())"


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "redis://localhost:6379"),
        ({"REDIS_HOST": "10.0.0.7"}, "redis://10.0.0.7"),
        ({"REDIS_HOST": "10.0.0.7:6380", "REDIS_PORT": "6390"}, "redis://10.0.0.7:6380"),
        ({"REDIS_HOST": "redis://10.0.0.7:6380"}, "redis://10.0.0.7:6380"),
        ({"REDIS_HOST": "10.0.0.7", "REDIS_PASSWORD": "pw"}, "redis://:pw@10.0.0.7"),
        ({"REDIS_HOST": "rediss://10.0.0.7"}, "redis://rediss://10.0.0.7"),
    ],
)
def test_the_image_reads_redis_host_as_tracardi_081_does(celery_host, env, url):
    # The app builds its broker URL at import: no Redis is needed for this.
    assert one_off(celery_host, REDIS_URL, env=env) == url


def test_a_queued_task_is_consumed_and_the_worker_answers_pings(worker):
    queue_touch(worker, "healthy")

    assert consumed_within(worker, "healthy", CONSUME_BOUND) is not None
    assert inspect_ping(worker)
    assert worker.run(f"{REDIS_CLI} llen celery").stdout.strip() == "0"


@pytest.mark.unhealed_hang
def test_unhealed_hang_after_a_redis_outage(worker):
    """THE BUG, with the healing off (no agent): after a Redis outage the worker
    reconnects and never takes a task again, while its unit and container run on;
    `systemctl restart` heals it. With the agent on, the next test shows it healed."""
    worker.run("systemctl stop tracardi-agent")
    before = container(worker, CONTAINER)["Id"]
    assert inspect_ping(worker), "a healthy worker answers pings"

    key, outages = outages_until_hung(worker, OUTAGE, OUTAGE_ATTEMPTS, CONSUME_BOUND)
    for n, outage in enumerate(outages, 1):
        print(f"outage {n}: {outage}")
    assert key is not None, f"no hang in {len(outages)} outages of {OUTAGE} s"

    assert consumed_within(worker, key, HANG_BOUND - CONSUME_BOUND) is None
    assert container(worker, CONTAINER)["Id"] == before
    assert container(worker, CONTAINER)["State"]["Running"]
    assert worker.run(f"systemctl is-active {UNIT}").stdout.split() == ["active"], (
        "the unit runs on")
    assert not inspect_ping(worker), "the hung worker answers no ping"
    print(f"inspect ping of the hung worker: {cost_of(worker, ping_command(node_name(worker)))}")
    hung, beats = redis_view(worker, worker_ports(worker)), heartbeats(worker)
    print(f"hung: {hung}; heartbeats in 5 s: {beats}")
    assert not hung.consuming and hung.pattern_subscribers == 0 and hung.queue_length >= 1
    # What does not tell the hang: heartbeats go on, the pidbox binding stays.
    assert beats > 0 and hung.pidbox_bindings >= 1

    worker.run(f"systemctl restart {UNIT}")
    wait_ready(worker)

    assert consumed_within(worker, key, CONSUME_BOUND) is not None
    assert inspect_ping(worker)


HEAL_BOUND = 60  # seconds from Redis' return to a task queued then being consumed
HEALED_OUTAGES = 3  # the third outage of a worker's life hung it in every unhealed run
RESTART = "3f8f1de91e2a4b029c7c056644a116f1"


def test_the_agent_heals_the_worker_after_every_redis_outage(worker):
    """With the agent: the outages that hang the unhealed worker (the test above) end each
    with the worker restarted once Redis is back, and a task queued then consumed."""
    since = worker.run("date +%s").stdout.strip()
    for n in range(1, HEALED_OUTAGES + 1):
        redis_outage(worker, OUTAGE)
        back = time.monotonic()
        key = f"after-outage-{n}"
        queue_touch(worker, key)
        took = consumed_within(worker, key, HEAL_BOUND)
        print(f"outage {n}: task consumed {took} s after queueing, "
              f"{time.monotonic() - back:.1f} s after Redis was back")
        assert took is not None, f"not consumed {HEAL_BOUND} s after outage {n}"
    restarts = worker.wait_until(
        f"out=$(journalctl -q --since @{since} MESSAGE_ID={RESTART} TRACARDI_UNIT={UNIT} "
        f"-o cat) && [ $(printf '%s\\n' \"$out\" | grep -c .) -ge {HEALED_OUTAGES} ] && "
        "printf '%s\\n' \"$out\"", timeout=30).splitlines()
    assert len(restarts) >= HEALED_OUTAGES, restarts
    assert all("redis 127.0.0.1:6379 is back after an outage" in line for line in restarts)


NOT_LIVE = "927487d9a49c4a62bebe479187dd5300"
QUEUE_STUCK = "d18c4384d5db413a81c39772844b27b9"
LIVENESS_BOUND = 60  # seconds from the first task a hung worker fails to take to its run


def test_work_based_liveness_heals_the_kombu_hang_within_a_minute(worker):
    """The hang of test_unhealed_hang_after_a_redis_outage, with the agent blind to the
    outages (stopped during each, started once Redis is back, so its restart after an
    outage cannot act): work-based liveness alone finds the hung worker and restarts it."""
    since = worker.run("date +%s").stdout.strip()
    for attempt in range(1, OUTAGE_ATTEMPTS + 1):
        worker.run("systemctl stop tracardi-agent")
        redis_outage_and_reconnect(worker, OUTAGE)
        worker.run("systemctl start tracardi-agent")
        key = f"liveness-{attempt}"
        queue_touch(worker, key)
        took = consumed_within(worker, key, LIVENESS_BOUND)
        print(f"outage {attempt}: task consumed {took} s after queueing")
        assert took is not None, f"not consumed within {LIVENESS_BOUND} s of queueing"
        if entries_since(worker, since, NOT_LIVE, UNIT):
            break
    else:
        pytest.fail(f"no hang in {OUTAGE_ATTEMPTS} outages of {OUTAGE} s")
    not_live = entries_since(worker, since, NOT_LIVE, UNIT)
    restarts = entries_since(worker, since, RESTART, UNIT)
    print(f"healed {took:.1f} s after the task was queued: {not_live}")
    assert len(not_live) == 1 and "has not asked Redis for work" in not_live[0]
    assert any("not taking work" in line or "work has waited" in line for line in restarts)


def test_work_based_liveness_heals_a_worker_that_answers_pings_but_takes_no_work(worker):
    """The variant of kombu issues #2492/#2629, made with Celery's own remote control: the
    worker stops consuming its queue while its pidbox still answers pings."""
    since = worker.run("date +%s").stdout.strip()
    before = container(worker, CONTAINER)["Id"]
    print(control(worker, "cancel_consumer", "celery", "-d", node_name(worker)))
    queue_touch(worker, "after-cancel")
    queued = time.monotonic()
    assert consumed_within(worker, "after-cancel", 5) is None, "it still takes tasks"
    assert inspect_ping(worker), "its pidbox still answers"
    took = consumed_within(worker, "after-cancel", LIVENESS_BOUND - (time.monotonic() - queued))
    healed = time.monotonic() - queued
    print(f"ping-answering worker healed {healed:.1f} s after the task was queued")
    assert took is not None, f"not consumed within {LIVENESS_BOUND} s of queueing"
    assert container(worker, CONTAINER)["Id"] != before
    not_live = entries_since(worker, since, NOT_LIVE, UNIT)
    assert len(not_live) == 1 and "has not asked Redis for work" in not_live[0], not_live


def test_a_full_prefetch_on_long_tasks_is_not_restarted_and_the_queue_reported_once(worker):
    """Every pool process busy and the prefetch full: kombu stops BRPOP while tasks wait.
    The agent must not take that for a hang; the waiting queue is reported stuck, once."""
    since = worker.run("date +%s").stdout.strip()
    before = container(worker, CONTAINER)["Id"]
    cpus = int(worker.run("nproc").stdout)
    # Celery's defaults: a pool process per CPU, 4 prefetched per process; 4 more wait.
    queue_holds(worker, 150, 5 * cpus + 4)
    started = time.monotonic()
    worker.wait_until(f"journalctl -q --since @{since} MESSAGE_ID={QUEUE_STUCK} -o cat "
                      "| grep -q .", timeout=60)
    print(f"queue reported stuck {time.monotonic() - started:.1f} s after the tasks were queued")
    time.sleep(max(0.0, 75 - (time.monotonic() - started)))  # then nothing more may happen
    assert int(worker.run(f"{REDIS_CLI} llen celery").stdout) > 0, "tasks still wait"
    assert container(worker, CONTAINER)["Id"] == before, "not restarted"
    assert entries_since(worker, since, NOT_LIVE) == []
    stuck = entries_since(worker, since, QUEUE_STUCK)
    assert len(stuck) == 1 and "queue celery" in stuck[0], stuck
    row = next(w for w in json.loads(tool(worker, "status --json", check=False).stdout)[
        "workers"] if w["unit"] == UNIT)
    assert row["work"] == "stuck", row
    # Its long tasks (and the next container taking those left) would hold the teardown.
    worker.run(f"{REDIS_CLI} flushall; docker kill {CONTAINER}", check=False)


def test_a_killed_worker_is_back_and_consumes(worker):
    before = container(worker, CONTAINER)["Id"]
    worker.run(f"docker kill -s KILL {CONTAINER}")
    wait_running(worker, CONTAINER, timeout=30, other_than=before)
    wait_ready(worker)
    queue_touch(worker, "after-kill")
    assert consumed_within(worker, "after-kill", CONSUME_BOUND) is not None


def test_replicas_are_distinct_celery_nodes(worker):
    install(worker, "--worker update --replicas update=2 --agent-interval 2")
    worker.run("systemctl stop tracardi-update.service; "
               "systemctl start tracardi-update@1 tracardi-update@2")
    for replica in ("tracardi-update@1.service", "tracardi-update@2.service"):
        wait_ready(worker, replica)
    pings = worker.run("docker exec tracardi-update-1 celery -A tracardi.worker.celery_worker "
                       "inspect ping --timeout 10").stdout
    assert "celery@tracardi-update-1: OK" in pings
    assert "celery@tracardi-update-2: OK" in pings
    journal = worker.run("journalctl -q -u 'tracardi-update@*' -o cat").stdout
    assert "DuplicateNodenameWarning" not in journal


def test_the_agent_probes_the_port_the_worker_reads_from_redis_host(worker):
    """0.8.1's update worker takes the port from REDIS_HOST: the agent probes 6380 too."""
    worker.run("redis-server --port 6380 --daemonize yes --save '' --appendonly no")
    try:
        write_env(worker, REDIS_HOST="redis://127.0.0.1:6380")
        install(worker, "--worker update --agent-interval 2")
        worker.run(f"systemctl restart {UNIT}")
        wait_ready(worker)
        one_off(worker, "import sys; from tracardi.worker.celery_worker import touch; "
                "touch.delay(sys.argv[1])", "on-6380", env={"REDIS_HOST": "127.0.0.1:6380"})
        worker.wait_until("redis-cli -p 6380 --raw get on-6380 | grep -q .", timeout=30)
        worker.run("systemctl stop redis-server")  # 6379: the one the worker does not use
        dependency = "redis 127.0.0.1:6380"
        worker.wait_until(f"{TOOL} status --json | grep -q '\"{dependency}\": true'",
                          timeout=30)
        time.sleep(6)  # three agent ticks with 6379 down
        status = json.loads(tool(worker, "status --json", check=False).stdout)
        row = next(w for w in status["workers"] if w["unit"] == UNIT)
        assert row["dependencies"] == {dependency: True}
        assert row["healthy"], row["problems"]
    finally:
        worker.run("redis-cli -p 6380 shutdown nosave; systemctl start redis-server",
                   check=False)


def test_what_liveness_checks_cost_and_say_when_healthy(worker):
    node = node_name(worker)
    pings = [cost_of(worker, ping_command(node, timeout=5)) for _ in range(5)]
    views = [cost_of(worker, f"{REDIS_CLI} client list") for _ in range(5)]
    for name, costs in (("inspect ping (docker exec)", pings), ("redis CLIENT LIST", views)):
        print(
            f"{name}: wall {statistics.median(c.wall for c in costs):.3f} s, "
            f"client CPU {statistics.median(c.client_cpu for c in costs):.3f} s, "
            f"sandbox CPU {statistics.median(c.sandbox_cpu for c in costs):.3f} s (medians of 5)"
        )

    view = redis_view(worker, worker_ports(worker))
    print(f"healthy: {view}; heartbeats in 5 s: {heartbeats(worker)}")
    assert inspect_ping(worker)
    assert view.consuming and view.pattern_subscribers >= 1 and view.queue_length == 0
    assert view.pidbox_bindings >= 1


def test_memory_of_the_cgroup_matches_docker_stats(worker):
    queue_touch(worker, "warm")  # so the pool processes have run a task
    assert consumed_within(worker, "warm", CONSUME_BOUND) is not None

    cgroup = cgroup_memory(worker)
    stats = docker_stats_memory(worker)
    status = tool(worker, "status --json", check=False).stdout
    print(f"memory: cgroup usage - inactive_file {cgroup / MiB:.1f} MiB, "
          f"docker stats {stats / MiB:.1f} MiB; status --json: {status.strip()}")
    assert cgroup > 20 * MiB, "a Celery worker with two pool processes"
    assert abs(cgroup - stats) <= max(2 * MiB, 0.05 * stats)
    row = next(w for w in json.loads(status)["workers"] if w["unit"] == UNIT)
    assert abs(row["memory_bytes"] - stats) <= 0.10 * stats  # what the limit and status use



GATE_WINDOW = 5  # seconds of the upgrade's gate window
PRODUCER = f"""
import time, redis
from {APP} import redis_url, touch
stop, n = redis.Redis.from_url(redis_url()), 0
while not stop.exists("producer-stop"):
    touch.delay(f"flow-{{n}}-{{time.time():.3f}}")
    n += 1
    time.sleep(0.5)
print(n)
"""


def test_tasks_queued_through_an_upgrade_and_its_rollback_are_all_consumed(worker):
    """A producer queues a task every 0.5 s while the worker is upgraded to another tag and
    rolled back (`upgrade --rollback`): every task is consumed, none waits longer than the
    gate window plus 30 s."""
    worker.run(f"docker tag {IMAGE}:{TRACARDI_TAG} {IMAGE}:{TRACARDI_TAG}-next")
    gate = f"--pull missing --window {GATE_WINDOW} --json"
    worker.run(f"docker run -d --name producer --network host -e REDIS_HOST=127.0.0.1 "
               f"{IMAGE}:{TRACARDI_TAG} python -c {shlex.quote(PRODUCER)}")
    try:
        up = tool(worker, f"upgrade --image-tag {TRACARDI_TAG}-next {gate}", check=False,
                  timeout=300)
        assert up.returncode == 0, up.stderr
        back = tool(worker, f"upgrade --rollback {gate}", check=False, timeout=300)
        assert back.returncode == 0, back.stderr
        worker.run(f"{REDIS_CLI} set producer-stop 1")
        queued = int(worker.wait_until("[ \"$(docker inspect -f '{{.State.Running}}' "
                                       "producer)\" = false ] && docker logs producer",
                                       timeout=30).strip())
        deadline = time.monotonic() + GATE_WINDOW + 30
        while True:
            keys = worker.run(f"{REDIS_CLI} --raw keys 'flow-*'").stdout.split()
            if len(keys) == queued or time.monotonic() > deadline:
                break
            time.sleep(1)
        values = worker.run(f"{REDIS_CLI} --raw mget {' '.join(keys)}").stdout.split("\n")
    finally:
        worker.run("docker rm -f producer", check=False)
    waits = [float(value.split()[2]) - float(key.rsplit("-", 1)[1])
             for key, value in zip(keys, values, strict=False)]
    print(f"tasks: {queued} queued, {len(keys)} consumed; longest wait {max(waits):.1f} s, "
          f"median {statistics.median(waits):.2f} s")
    assert len(keys) == queued > 20
    assert max(waits) <= GATE_WINDOW + 30
