"""The VM tier on Podman (issue 25): `install --runtime podman` (Quadlet .container files)
on the releases whose Podman has Quadlet, Debian 13 (5.4) and unstable (5.8; Debian 12's
4.3 has none, and install refuses it), on the release's guest that test_vm.py's tests ran
on before (conftest's vm_guest).

The stand-in workers are imported into Podman's store under the fully qualified names a
registry's pull gives (`docker.io/tracardi/...`), and one install is shared by the tests,
one after the other, each leaving every worker running: the target started and `status`
healthy, a SIGKILLed worker back, a crash loop past the start limit re-armed by the agent,
a failing health check that has Podman kill the worker, a Redis outage held and released,
an upgrade and its rollback, a reboot, the license looked for where it must not be, and
`uninstall --purge`. Last, the real Celery update worker installed alone: its work-based
liveness. Each step's seconds go into the VM report (vm.report).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tracardi_systemd.names import DEFAULT_QUADLET_DIR, LICENSE_SECRET

from . import test_agent as agent_tests
from . import test_purge as purge_tests
from .celery_ops import (
    CONTAINER,
    UNIT,
    consumed_within,
    control,
    entries_since,
    node_name,
    queue_touch,
)
from .conftest import AgentHost
from .guest import Guest
from .operator import (
    INSTALLED_ENV,
    WORKER_NAMES,
    WORKER_UNITS,
    container,
    install,
    journal,
    sha256,
    start_all,
    tool,
    uninstall_everything,
    wait_labelled_containers,
    wait_unit,
    write_env,
)
from .sandbox import CHECKOUT
from .standin import (
    RUN_ONCE_IMAGES,
    TRACARDI_081_IMAGES,
    TRACARDI_TAG,
    build_standin_images,
    worker_of,
)
from .test_agent import set_installed
from .test_celery_worker import LIVENESS_BOUND, NOT_LIVE, RESTART
from .test_hardening import AGENT, AGENT_MAX, exposure
from .test_vm import (
    Installed,
    healthy,
    real_celery_worker,
    removed_and_stray_repaired,
    start_limit_widened,
)
from .vm import PODMAN_RELEASES, report, timed

pytestmark = [pytest.mark.vm, pytest.mark.vm_releases(*PODMAN_RELEASES)]

PODMAN = "podman"
# Not operator.LICENSE: the Docker tests before these wrote to the same journal.
LICENSE = "LIC-podman-e2e-5e1f0b-do-not-leak-27182"
UPGRADE_TAG = "0.8.2"
INTERVAL = agent_tests.INTERVAL  # the agent's cycle
LIVENESS_INTERVAL = 5  # the update worker's health check; its start period is 120 s
HOOK = CHECKOUT / "examples" / "tracardi-notify@.service"
INSTALL = (f"--runtime podman --agent-interval {INTERVAL} --liveness-interval "
           f"{LIVENESS_INTERVAL} --on-failure {HOOK.name}")
# What purge leaves by design: Podman's own files (its store of images, containers and
# secrets, its run-time state), and podman.socket, which install enabled and uninstall
# leaves enabled (README: other programs may use it); Redis's dump, saved at the reboot.
PURGE_KEEPS = ("/var/lib/containers/", "/run/containers/", "/run/libpod/", "/run/crun",
               "/run/podman/", "/etc/systemd/system/sockets.target.wants/podman.socket",
               "/var/lib/redis/")


def expected_images(tag: str) -> dict[str, str]:
    """container name -> the image it runs at `tag`, fully qualified."""
    return {f"tracardi-{worker_of(image)}": f"docker.io/{image}:{tag}"
            for image in TRACARDI_081_IMAGES if image not in RUN_ONCE_IMAGES}


def wait_images(host: Guest, tag: str, timeout: float = 60) -> None:
    """Until every worker unit is active and its container runs the image of `tag`."""
    expected = " ".join(f"{name}={image}" for name, image
                        in sorted(expected_images(tag).items()))
    host.wait_until(
        f"systemctl is-active -q {' '.join(WORKER_UNITS)} && [ \"$(podman inspect -f "
        "'{{.Name}}={{.ImageName}}{{if not .State.Running}} not-running{{end}}' "
        f"{' '.join(WORKER_NAMES)} | xargs)\" = {shlex.quote(expected)} ]", timeout=timeout)


def kill_init(host: Guest, name: str) -> None:
    """SIGKILL to the container's init (catatonit under RunInit=true)."""
    pid = host.run(f"podman inspect -f '{{{{.State.Pid}}}}' {name}").stdout.strip()
    host.run(f"kill -KILL {pid}")


@dataclass
class PodmanInstalled(Installed):
    since: str = ""  # epoch seconds before the install: the journal is read from there


@pytest.fixture(scope="module")
def installed(vm_guest: Guest) -> Iterator[PodmanInstalled]:
    host = vm_guest
    with timed(host.release, "Podman: stand-ins of 0.8.1 and 0.8.2 imported into its store"):
        build_standin_images(host, podman=True, also_tags=(UPGRADE_TAG,))
    # Present from the start, so the units pass them (by name); tests flip their values.
    write_env(host, API_LICENSE=LICENSE, STANDIN_FAIL_SCHEDULER="0",
              STANDIN_REQUIRE_REDIS="0")
    host.put(HOOK, f"/etc/systemd/system/{HOOK.name}")  # the operator's, kept by purge
    files_before = purge_tests.files(host)
    since = host.run("date +%s").stdout.strip()
    started = time.monotonic()
    install(host, INSTALL)
    state = PodmanInstalled(host, files_before, start_all(host, PODMAN, timeout=60), PODMAN,
                            since)
    report(host.release, f"Podman: install + start of 5 workers: "
           f"{time.monotonic() - started:.1f} s")
    yield state
    uninstall_everything(host, PODMAN)


def test_every_worker_runs_its_fully_qualified_image_under_quadlet(installed) -> None:
    host = installed.host
    wait_images(host, TRACARDI_TAG)
    wait_unit(host, "tracardi.target", ActiveState="active")
    for name in WORKER_NAMES:
        # Quadlet's unit, generated from the tool's .container file at daemon-reload
        source = host.run(f"systemctl show -p SourcePath --value {name}.service").stdout
        assert source.strip() == f"{DEFAULT_QUADLET_DIR}/{name}.container"
    images = host.run(f"grep -h '^Image=' {DEFAULT_QUADLET_DIR}/tracardi-*.container").stdout
    assert images.split() and all(line.startswith("Image=docker.io/tracardi/")
                                  for line in images.split()), images


def test_the_agent_runs_hardened_and_status_is_healthy_with_memory(installed) -> None:
    host = installed.host
    host.wait_until("systemctl is-active -q tracardi-agent.service podman.socket", timeout=60)
    status = healthy(host)
    assert [worker["unit"] for worker in status["workers"]] == WORKER_UNITS
    # memory from each container's cgroup (Quadlet's libpod-payload-<id> in the unit's); a
    # stand-in (catatonit, sh, sleep) is charged well under a MiB
    memory = {worker["unit"]: worker["memory_bytes"] for worker in status["workers"]}
    assert all(memory.values()), (memory, cgroups_of_workers(host))
    assert exposure(host, AGENT) <= AGENT_MAX
    again = install(host, INSTALL)
    assert again.stdout.strip() == "nothing to change", again.stdout


def cgroups_of_workers(host: Guest) -> str:
    """Where each worker's init sits and what its cgroup holds: why no memory was read."""
    return host.run("for c in $(podman ps -q --filter label=tracardi.managed=true); do "
                    "pid=$(podman inspect -f '{{.State.Pid}}' $c); cat /proc/$pid/cgroup; "
                    "dir=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup); "
                    "ls $dir | tr '\\n' ' '; cat $dir/../cgroup.subtree_control; done",
                    check=False).stdout


def test_a_removed_container_and_a_stray_one_are_repaired(installed) -> None:
    removed_and_stray_repaired(
        installed, f"docker.io/tracardi/com-tracardi-scheduler-worker:{TRACARDI_TAG}")


def test_a_sigkilled_worker_is_back(installed) -> None:
    host = installed.host
    killed = time.monotonic()
    kill_init(host, "tracardi-scheduler")
    installed.running(fresh=["tracardi-scheduler.service"], timeout=30)
    report(host.release, f"Podman: SIGKILLed worker running again after "
           f"{time.monotonic() - killed:.1f} s")
    wait_labelled_containers(host, WORKER_NAMES, engine=PODMAN)


def test_a_crash_loop_past_the_start_limit_is_rearmed_by_the_agent(installed) -> None:
    host = installed.host
    agent = AgentHost.from_now(host)
    since = host.run("date +%s").stdout.strip()
    with start_limit_widened(host, "tracardi-scheduler.service"):
        set_installed(host, "STANDIN_FAIL_SCHEDULER", "1")
        started = time.monotonic()
        kill_init(host, "tracardi-scheduler")
        agent_tests.rearmed_until_fixed(agent, engine=PODMAN)
    report(host.release, f"Podman: crash loop past the start limit, re-armed and running "
           f"once fixed {time.monotonic() - started:.1f} s after it began")
    installed.running(fresh=["tracardi-scheduler.service"])
    # --on-failure: the hook ran for the worker systemd gave up on (OnFailure= of Quadlet's
    # generated unit, and the agent's own start of it; test_monitoring.py tells them apart)
    host.wait_until(f"journalctl -q -t tracardi-notify --since @{since} -o cat | grep -q "
                    "'^tracardi-scheduler.service failed'", timeout=30)


def test_a_failing_health_check_has_podman_kill_the_worker_and_systemd_restart_it(
        installed) -> None:
    host = installed.host
    update = "tracardi-update"
    host.wait_until(f"podman inspect -f '{{{{.State.Health.Status}}}}' {update} "
                    "| grep -qx healthy", timeout=60)
    age = host.run(f"echo $(( $(date +%s) - $(podman inspect -f "
                   f"'{{{{.State.StartedAt.Unix}}}}' {update}) ))").stdout.strip()
    since = host.run("date +%s").stdout.strip()
    failing = time.monotonic()
    host.run(f"podman exec {update} touch /tmp/not-live")  # its Celery ping fails from now
    # Failures count once the check's start period (120 s) is over: the deadline allows it.
    installed.running(fresh=[f"{update}.service"], timeout=120 + 6 * LIVENESS_INTERVAL)
    report(host.release, f"Podman: health check failing (worker {age} s old), new container "
           f"running {time.monotonic() - failing:.1f} s later")
    # Podman's kill (HealthOnFailure=kill): a SIGKILL nobody else sent.
    assert "status=137" in journal(host, "-u", f"{update}.service", f"--since @{since}")


def test_restarts_are_held_while_redis_is_down_then_released(installed) -> None:
    host = installed.host
    agent = AgentHost.from_now(host)
    set_installed(host, "STANDIN_REQUIRE_REDIS", "1")
    started = time.monotonic()
    try:
        with start_limit_widened(host, "tracardi-update.service"):
            agent_tests.held_while_redis_is_down(agent, engine=PODMAN)
    finally:
        set_installed(host, "STANDIN_REQUIRE_REDIS", "0")
        host.run("systemctl start redis-server")
    report(host.release, f"Podman: Redis outage held, the update worker running again "
           f"{time.monotonic() - started:.1f} s after Redis stopped")
    installed.running(fresh=["tracardi-update.service"])


def upgrade(host: Guest, args: str) -> None:
    done = tool(host, f"upgrade {args} --pull missing --window 2 --liveness-timeout 60",
                check=False, timeout=600)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"


def test_an_upgrade_then_its_rollback(installed) -> None:
    host = installed.host
    started = time.monotonic()
    upgrade(host, f"--image-tag {UPGRADE_TAG}")
    wait_images(host, UPGRADE_TAG)
    upgraded = time.monotonic() - started
    files = host.run(f"grep -h '^Image=' {DEFAULT_QUADLET_DIR}/tracardi-*.container").stdout
    assert f":{TRACARDI_TAG}" not in files and f":{UPGRADE_TAG}" in files, files

    upgrade(host, "--rollback")
    wait_images(host, TRACARDI_TAG)
    report(host.release, f"Podman: upgrade to {UPGRADE_TAG} {upgraded:.1f} s, its rollback "
           f"{time.monotonic() - started - upgraded:.1f} s")
    installed.running()


def test_every_worker_is_back_after_a_reboot(installed) -> None:
    host = installed.host
    took = host.reboot()
    booted = time.monotonic()
    installed.running(fresh=WORKER_UNITS)
    report(host.release, f"Podman: reboot: guest up in {took:.1f} s, every worker running "
           f"{time.monotonic() - booted:.1f} s later")
    wait_labelled_containers(host, WORKER_NAMES, engine=PODMAN)
    wait_unit(host, "tracardi.target", ActiveState="active")
    assert "already in use" not in journal(host, "-b", "-u", "'tracardi-*'")


# Where the license must not be, each a command whose output is searched (inside the guest,
# for the pattern in a file: a pattern in grep's argv would be found in /proc/*/cmdline).
LEAK_PLACES = {
    "the argv of every process": "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '",
    "the unit and Quadlet files": "find /etc/systemd/system /etc/containers/systemd -type f "
                                  "-exec cat {} +",
    "the generated and transient units": "find /run/systemd/generator "
                                         "/run/systemd/transient -type f -exec cat {} +",
    "systemctl show": "systemctl show 'tracardi*'",
    "podman inspect of every worker": f"podman inspect {' '.join(WORKER_NAMES)}",
    "podman secret inspect": f"podman secret inspect {LICENSE_SECRET}",
}
PATTERN = "/root/license-pattern"


def matches(host: Guest, command: str) -> tuple[int, int]:
    """The bytes `command` printed, and the lines of them that hold the license."""
    out = host.run(f"{command} > /tmp/leak-place; wc -c < /tmp/leak-place; "
                   f"grep -cF -f {PATTERN} /tmp/leak-place; rm /tmp/leak-place",
                   check=False).stdout.split()
    return int(out[0]), int(out[1])


def test_the_license_is_in_no_argv_unit_journal_or_inspect(installed) -> None:
    host = installed.host
    host.run(f"install -m 600 /dev/null {PATTERN} && cat > {PATTERN}", input=LICENSE)
    try:
        # It is where it belongs, so the search would find it elsewhere: in the env file, the
        # Podman secret's value, and a commercial worker's environment (as LICENSE).
        assert matches(host, f"cat {INSTALLED_ENV}")[1] == 1
        assert matches(host, f"podman secret inspect --showsecret {LICENSE_SECRET}")[1] == 1
        host.wait_until(f"journalctl -u tracardi-trigger --since @{installed.since} -o cat "
                        f"| grep -qx 'secret-sha256 LICENSE {sha256(LICENSE)}'", timeout=30)
        places = {**LEAK_PLACES, "the journal since the install":
                  f"journalctl --no-pager -o export --since @{installed.since}"}
        found = {where: matches(host, command) for where, command in places.items()}
    finally:
        host.run(f"rm -f {PATTERN}")
    assert all(size > 0 for size, _ in found.values()), f"nothing read from some: {found}"
    assert [where for where, (_, hits) in found.items() if hits] == []


def test_uninstall_purge_leaves_no_unit_container_or_secret(installed) -> None:
    host = installed.host
    started = time.monotonic()
    purge_tests.purge_leaves_nothing(host, installed.files_before, also_churn=PURGE_KEEPS,
                                     engine=PODMAN)
    report(host.release, f"Podman: uninstall --purge {time.monotonic() - started:.1f} s")
    assert host.run("podman secret ls --format '{{.Name}}'").stdout.strip() == ""


# --- last: the real Celery update worker, whose image then bears the stand-in's name ------

@pytest.fixture(scope="module")
def celery_worker(vm_guest: Guest) -> Iterator[Guest]:
    with real_celery_worker(vm_guest, PODMAN, "--runtime podman"):
        yield vm_guest


def test_work_based_liveness_restarts_the_real_celery_worker_that_takes_no_work(
        celery_worker: Guest) -> None:
    """The sandbox Celery tier's worker that answers pings but takes no work (its consumer
    cancelled through Celery's remote control): Podman's health check (a ping) sees nothing
    wrong, the agent's work-based liveness restarts it, and the task is consumed."""
    host = celery_worker
    since = host.run("date +%s").stdout.strip()
    before = container(host, CONTAINER, PODMAN)["Id"]
    control(host, "cancel_consumer", "celery", "-d", node_name(host, engine=PODMAN),
            engine=PODMAN)
    queue_touch(host, "after-cancel", engine=PODMAN)
    queued = time.monotonic()
    assert consumed_within(host, "after-cancel", 5) is None, "it still takes tasks"
    took = consumed_within(host, "after-cancel", LIVENESS_BOUND * host.slowness)
    assert took is not None, "the task queued after the cancel was never consumed"
    report(host.release, f"Podman: real Celery worker taking no work restarted, the task "
           f"consumed {time.monotonic() - queued:.1f} s after it was queued")
    assert container(host, CONTAINER, PODMAN)["Id"] != before
    not_live = entries_since(host, since, NOT_LIVE, UNIT)
    assert len(not_live) == 1 and "has not asked Redis for work" in not_live[0], not_live
    restarts = entries_since(host, since, RESTART, UNIT)
    assert any("not taking work" in line or "work has waited" in line
               for line in restarts), restarts
