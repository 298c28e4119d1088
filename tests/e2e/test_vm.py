"""The VM tier: each Debian release booted as a real VM (guest.py) on cgroup v2, with the
checkout's deb installed, runs the operator's steps of the sandbox tier (operator.py) and
the sandbox tier's own tests named below, on one booted guest per release.

A guest runs the emulated CPU 6-10x slower than native, so the tests share what they can:
one guest per release; the sandbox tier's tests that need an install of their own first
(re-arm, memory limit, privileges); then one install (`installed`) that the tests of
recovery run against one after the other (each leaves every worker running), and that the
last one purges; last of all, the real Celery worker. Run it with `-m vm` (scripts/test
does, beside the sandbox tiers, on the releases TRACARDI_VM_RELEASES names, all three by
default); other runs leave it out.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import test_agent as agent_tests
from . import test_api_floor as api_floor_tests
from . import test_hardening as hardening_tests
from . import test_purge as purge_tests
from .celery_image import import_image, rootfs_tar
from .celery_ops import (
    CONTAINER,
    REDIS_CLI,
    consumed_within,
    entries_since,
    queue_touch,
    redis_outage,
    wait_ready,
)
from .guest import Guest
from .operator import (
    WORKER_NAMES,
    WORKER_UNITS,
    install,
    journal,
    start_all,
    uninstall_everything,
    wait_labelled_containers,
    wait_running,
    wait_unit,
    write_env,
)
from .test_celery_worker import HEAL_BOUND, RESTART
from .test_cgroup import stats_bytes
from .test_hardening import AGENT, AGENT_MAX, WORKER_MAX, exposure
from .vm import (
    DOCKER_ONLY,
    VM_RELEASES,
    report,
    timed,
)

pytestmark = pytest.mark.vm

MIB = 2**20
# dockerd's outage: two minutes in the sandbox tier, shorter here (the agent's behaviour is
# the same after its first look).
DOCKER_OUTAGE = 20
# Redis' outage under the real Celery worker: the sandbox tier's 60 s outages are what it
# takes to hang the unhealed worker; the agent's healing (a restart once Redis is back)
# follows any outage it saw.
REDIS_OUTAGE = 20


# The sandbox tier's fixtures, over this module's `sandbox`: the guest (conftest's
# agent_host takes it as it is).
host = hardening_tests.host


@pytest.fixture(scope="module")
def sandbox(vm_guest: Guest) -> Guest:
    """This module's host, in place of conftest's sandbox: the release's VM (vm_guest)."""
    return vm_guest


def test_the_guest_runs_its_release_on_cgroup_v2_with_apparmor(sandbox: Guest) -> None:
    release = VM_RELEASES[sandbox.release]
    os_release = sandbox.run(". /etc/os-release; echo $VERSION_CODENAME").stdout.strip()
    assert os_release == release.codename
    systemd = int(sandbox.run("systemctl --version").stdout.split()[1])
    assert systemd in release.systemd
    docker = sandbox.run("docker version --format '{{.Server.Version}}'").stdout.strip()
    assert docker.startswith(release.docker)
    python = sandbox.run(f"{sandbox.python} -c 'import sys; print(sys.version)'").stdout
    assert python.startswith(release.python + ".")
    assert sandbox.run("stat -f -c %T /sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    controllers = sandbox.run("cat /sys/fs/cgroup/cgroup.controllers").stdout.split()
    assert {"cpu", "memory", "io", "pids"} <= set(controllers)
    # A stock host: AppArmor on, and dockerd confining containers with its profile.
    assert sandbox.run("cat /sys/module/apparmor/parameters/enabled").stdout.strip() == "Y"
    assert "apparmor" in sandbox.run("docker info --format '{{.SecurityOptions}}'").stdout


def healthy(host: Guest, timeout: float = 90) -> dict:
    """`status --json` once one look says healthy (exit 0) with the agent's view of every
    worker `running` (no restart of its own under way); what that look said."""
    deadline = time.monotonic() + timeout * host.slowness
    while True:
        look = host.run(f"{host.tool} status --json", check=False)
        status = json.loads(look.stdout)
        states = [worker["agent_state"] for worker in status["workers"]]
        if look.returncode == 0 and states == ["running"] * len(WORKER_UNITS):
            return status
        assert time.monotonic() < deadline, f"not healthy after {timeout} s:\n{look.stdout}"
        time.sleep(1)


READ = """
import json, sys
from tracardi_systemd.host.cgroup import cgroup_version, containers_memory, memory_cgroup
pids = [int(p) for p in sys.argv[1:]]
version = cgroup_version()
print(json.dumps({"version": version, "memory": containers_memory(pids),
                  "cgroups": [str(memory_cgroup(p, version)) for p in pids]}))
"""


# --- the sandbox tier's tests, each with an install of its own -------------------------------


@contextmanager
def start_limit_widened(host: Guest, *units: str) -> Iterator[None]:
    """A failing start of a worker takes 5-12 s under emulation, so the shipped start limit
    (5 starts in 60 s) may never be reached: the operator's drop-in widens its window."""
    folders = " ".join(f"/etc/systemd/system/{unit}.d" for unit in units)
    host.run(f"for d in {folders}; do mkdir -p $d && printf '[Unit]\\n"
             "StartLimitIntervalSec=600\\n' > $d/start-limit.conf; done && "
             "systemctl daemon-reload")
    try:
        yield
    finally:
        host.run(f"rm -rf {folders} && systemctl daemon-reload")


# Where test_vm_podman.py runs, its crash loop is re-armed on the same systemd (vm.py).
@pytest.mark.vm_releases(*DOCKER_ONLY)
def test_agent_rearms_a_unit_systemd_gave_up_on(agent_host) -> None:
    with start_limit_widened(agent_host.host, "tracardi-scheduler.service"):
        agent_tests.test_agent_rearms_a_unit_systemd_gave_up_on(agent_host)


def test_a_worker_over_its_memory_limit_is_restarted(agent_host) -> None:
    agent_tests.test_worker_over_its_memory_limit_is_restarted(agent_host)


def test_the_agent_and_the_docker_clients_run_without_privileges(host) -> None:
    hardening_tests.test_the_agent_and_the_docker_clients_run_without_privileges(host)


# --- one install, the tests of recovery one after the other, then its purge ------------------


@dataclass
class Installed:
    host: Guest
    files_before: set[str]  # every file of the places purge must leave as they were
    ids: dict[str, str]  # unit -> the id of its running container
    engine: str = "docker"  # the client of the workers' containers

    def running(self, fresh: Collection[str] = (), timeout: float = 120) -> None:
        """Every worker running; those of the `fresh` units in a new container."""
        self.ids = {unit: wait_running(self.host, unit.removesuffix(".service"),
                                       timeout=timeout,
                                       other_than=self.ids[unit] if unit in fresh else "",
                                       engine=self.engine)
                    for unit in WORKER_UNITS}


@pytest.fixture(scope="module")
def installed(sandbox: Guest) -> Iterator[Installed]:
    host = sandbox
    write_env(host, STANDIN_ALLOC_MB_SCHEDULER="60")
    files_before = purge_tests.files(host)
    started = time.monotonic()
    install(host, "--agent-interval 2")
    state = Installed(host, files_before, start_all(host))
    host.wait_until(f"systemctl is-active -q {AGENT}", timeout=60)
    report(host.release, f"install + start of 5 workers: {time.monotonic() - started:.1f} s")
    yield state
    uninstall_everything(host)


def test_the_workers_run_under_the_hardened_units_and_status_is_healthy(installed) -> None:
    host = installed.host
    healthy(host)
    scores = {unit: exposure(host, unit) for unit in [AGENT, *WORKER_UNITS]}
    report(host.release, f"exposure: {AGENT} {scores[AGENT]}, workers "
           f"{sorted({scores[unit] for unit in WORKER_UNITS})}")
    assert scores[AGENT] <= AGENT_MAX
    assert all(scores[unit] <= WORKER_MAX for unit in WORKER_UNITS), scores


def test_memory_read_from_the_v2_cgroup_is_what_docker_stats_shows(installed) -> None:
    host = installed.host
    # The units log to the journal (docker logs cannot read it back).
    host.wait_until("journalctl -u tracardi-scheduler -o cat | grep -q 'standin holding 60'",
                    timeout=120)
    inspect = host.run("docker inspect -f '{{.Name}} {{.State.Pid}} {{.Id}}' "
                       + " ".join(WORKER_NAMES))
    found = [line.split() for line in inspect.stdout.splitlines()]
    pids = {name.lstrip("/"): (int(pid), cid) for name, pid, cid in found}
    read = read_memory(host, [pid for pid, _ in pids.values()])

    assert read["version"] == 2
    for (_, cid), cgroup in zip(pids.values(), read["cgroups"], strict=True):
        # dockerd's systemd cgroup driver, as on every v2 host
        assert cgroup == f"/sys/fs/cgroup/system.slice/docker-{cid}.scope", cgroup
    for name, (pid, _) in pids.items():
        measured, expected = memory_and_docker_stats(host, name, pid)
        report(host.release, f"memory {name}: cgroup v2 {measured / MIB:.1f} MiB, "
               f"docker stats {expected / MIB:.1f} MiB")
        assert close_enough(measured, expected), (name, measured, expected)
    assert read["memory"][str(pids["tracardi-scheduler"][0])] >= 60 * MIB


def read_memory(host: Guest, pids: list[int]) -> dict:
    return json.loads(host.run(f"{host.python} -c {shlex.quote(READ)} "
                               + " ".join(str(pid) for pid in pids)).stdout)


def close_enough(measured: int, expected: float) -> bool:
    # An idle stand-in holds about 500 KiB, and the `sleep` it forks every 5 s moves that
    # by up to 60 KiB between the two reads: within 10 %, or 128 KiB for such a one.
    return abs(measured - expected) <= max(0.1 * expected, 128 * 2**10)


def memory_and_docker_stats(host: Guest, name: str, pid: int,
                            timeout: float = 60) -> tuple[int, float]:
    """The cgroup's figure and docker stats', read one after the other until they agree or
    the time is up (then the last pair): `docker stats` takes seconds under emulation, and
    an idle stand-in's few hundred KiB move in between (seen once: 504 KiB against 924)."""
    deadline = time.monotonic() + timeout
    while True:
        measured = read_memory(host, [pid])["memory"][str(pid)]
        expected = stats_bytes(host, name)
        if close_enough(measured, expected) or time.monotonic() > deadline:
            return measured, expected
        time.sleep(1)


def test_a_sigkilled_worker_is_back(installed) -> None:
    host = installed.host
    pid = host.run("docker inspect -f '{{.State.Pid}}' tracardi-scheduler").stdout.strip()
    killed = time.monotonic()
    host.run(f"kill -KILL {pid}")
    installed.running(fresh=["tracardi-scheduler.service"])
    report(host.release, f"SIGKILLed worker running again after {time.monotonic() - killed:.1f} s")
    healthy(host)


def test_a_removed_container_and_a_stray_one_are_repaired(installed) -> None:
    removed_and_stray_repaired(installed, "tracardi/com-tracardi-scheduler-worker:0.8.1")


def removed_and_stray_repaired(installed: Installed, image: str) -> None:
    """A worker's container removed behind systemd's back comes back, and a labelled
    container no unit owns is removed by the agent, on either engine."""
    host, engine = installed.host, installed.engine
    since = host.run("date +%s").stdout.strip()
    host.run(f"{engine} rm -f tracardi-scheduler")
    host.run(f"{engine} run -d --name ghost --network host --label tracardi.managed=true "
             "--label tracardi.worker=scheduler --label tracardi.unit=tracardi-ghost.service "
             f"{image}")
    started = time.monotonic()
    installed.running(fresh=["tracardi-scheduler.service"], timeout=30)
    host.wait_until(f"! {engine} inspect ghost >/dev/null 2>&1", timeout=30)
    report(host.release, f"{engine}: removed container back and stray one removed in "
           f"{time.monotonic() - started:.1f} s")
    removed = host.run(f"journalctl -o json --since @{since} "
                       "TRACARDI_ACTION=orphan_removed").stdout.splitlines()
    assert [json.loads(line)["TRACARDI_CONTAINER"] for line in removed] == ["ghost"]


def test_docker_stopped_then_started_under_the_agent(installed) -> None:
    # The sandbox's bound, which the guest stretches: after dockerd's outage every unit has
    # hit its start limit, and the agent re-arms them one cycle at a time.
    took = agent_tests.stop_docker_then_start(installed.host, installed.ids, DOCKER_OUTAGE)
    report(installed.host.release, f"docker stopped {DOCKER_OUTAGE} s, then every worker "
           f"back {took:.1f} s after it started")
    installed.running()


# The reboot where test_vm_podman.py does not reboot the guest (vm.py); a power loss, which
# leaves dockerd's state saying the containers run, on every release.
@pytest.mark.parametrize("outage", [
    pytest.param("reboot", marks=pytest.mark.vm_releases(*DOCKER_ONLY)), "power loss"])
def test_every_worker_is_back_after_a_reboot_or_a_power_loss(installed, outage: str) -> None:
    """A real reboot (`systemctl reboot` in the guest), or a power loss: qemu killed, so
    dockerd's state says the containers run, then the same disk booted again. Every worker
    runs in a new container, no other container is left, no name conflict, the agent's
    view healthy."""
    host = installed.host
    if outage == "reboot":
        took = host.reboot()
    else:
        host.wait_until("test -s /run/tracardi-systemd/agent-state.json", timeout=60)
        host.run("sync")  # what the guest wrote is on its disk
        took = host.power_loss()
    booted = time.monotonic()
    installed.running(fresh=WORKER_UNITS)
    workers = time.monotonic() - booted
    healthy(host, timeout=120)
    report(host.release, f"{outage}: guest up in {took:.1f} s, every worker running "
           f"{workers:.1f} s later, status healthy {time.monotonic() - booted:.1f} s later")
    wait_labelled_containers(host, WORKER_NAMES)
    assert "already in use" not in journal(host, "-b", "-u", "'tracardi-*'")
    wait_unit(host, "tracardi.target", ActiveState="active")


def test_uninstall_purge_after_the_run_leaves_nothing(installed) -> None:
    # Redis (not the tool) saved its data when the guest rebooted.
    purge_tests.purge_leaves_nothing(installed.host, installed.files_before,
                                     also_churn=("/var/lib/redis/",))


def test_the_tool_works_with_a_dockerd_that_refuses_api_1_41(sandbox: Guest) -> None:
    """Unstable's dockerd under test_api_floor.py's floor (DOCKER_MIN_API_VERSION=1.44)
    refuses an old client as Docker 29 does; the tool negotiates a version it accepts."""
    host = sandbox
    if host.release != "sid":
        pytest.skip("unstable's dockerd only: Debian 13's is test_api_floor.py's, in the "
                    "sandbox; Debian 12's 20.10 has no API floor")
    with api_floor_tests.api_floor(host):
        api_floor_tests.test_the_daemon_refuses_api_141_as_docker_29_does(host)
        write_env(host)
        install(host, "--agent-interval 2")
        ids = start_all(host)
        healthy(host, timeout=60)
        host.run("docker rm -f tracardi-scheduler")
        wait_running(host, "tracardi-scheduler", timeout=60,
                     other_than=ids["tracardi-scheduler.service"])


# --- last: the real Celery update worker, whose image then bears the stand-in's name ------

@contextmanager
def real_celery_worker(host: Guest, engine: str = "docker", options: str = "") -> Iterator[None]:
    """The image the Celery tier builds (Tracardi 0.8.1's update worker) imported into the
    engine's store under the update worker's name, installed alone with the agent (and
    `options`), started and ready; everything uninstalled at the end."""
    with timed(host.release, f"{engine}: real Celery image imported"):
        tar, _ = rootfs_tar()
        host.put(tar, "/root/celery-rootfs.tar")
        import_image(host, Path("/root/celery-rootfs.tar"), engine=engine)
        host.run("rm /root/celery-rootfs.tar")
    uninstall_everything(host, engine)  # whatever the tests before left (sid's API floor's)
    host.run(f"{REDIS_CLI} flushall")
    write_env(host)
    install(host, f"{options} --worker update --agent-interval 2".strip())
    try:
        host.run("systemctl start tracardi.target")
        wait_running(host, CONTAINER, timeout=60, engine=engine)
        wait_ready(host, timeout=60 * host.slowness)
        yield
    finally:
        uninstall_everything(host, engine)


# Where test_vm_podman.py runs, it runs the real worker under Podman (vm.py).
@pytest.mark.vm_releases(*DOCKER_ONLY)
def test_the_real_celery_worker_is_healed_after_a_redis_outage(sandbox: Guest) -> None:
    """The image the Celery tier builds (Tracardi 0.8.1's update worker), loaded into the
    guest: through a Redis outage, then restarted by the agent and taking a task."""
    host = sandbox
    with real_celery_worker(host):
        since = host.run("date +%s").stdout.strip()
        redis_outage(host, REDIS_OUTAGE)
        back = time.monotonic()
        queue_touch(host, "after-the-outage")
        took = consumed_within(host, "after-the-outage", HEAL_BOUND * host.slowness)
        assert took is not None, "the task queued after the outage was never consumed"
        report(host.release, f"Celery: Redis down {REDIS_OUTAGE} s, a task queued then "
               f"consumed {time.monotonic() - back:.1f} s after Redis was back")
        host.wait_until(f"journalctl -q --since @{since} MESSAGE_ID={RESTART} -o cat "
                        "| grep -q .", timeout=30)
        restarts = entries_since(host, since, RESTART, "tracardi-update.service")
        assert restarts and all("redis 127.0.0.1:6379 is back after an outage" in line
                                for line in restarts), restarts
