"""Upgrades that cannot strand a worker (issue 22), on a real systemd + Docker host: a worker
that crashed onto the new tag during another's gate and an old tag moved meanwhile, both
undone by the rollback, and an install refused meanwhile; SIGTERM and SIGKILL at seeded random
moments; Tracardi 1.2's moving tag and its init gated before any worker moves.

TRACARDI_E2E_SIGNAL_TRIALS sets how many SIGTERMs and how many SIGKILLs (3 each in CI).
"""

from __future__ import annotations

import json
import os
import random
import shlex
import time

import pytest

from tracardi_systemd.upgrade.run import UpgradeEvent

from .operator import (
    ENV_SOURCE,
    TOOL,
    WORKER_UNITS,
    container,
    install,
    start_all,
    tool,
    uninstall_everything,
    wait_running,
    write_env,
)
from .standin import TRACARDI_12_IMAGES, TRACARDI_12_TAG, build_standin_images
from .test_upgrade import DEAF, GOOD, tagged  # noqa: F401 (tagged: the 0.8.x stand-ins)
from .test_versions import SETTINGS_12

INIT_FAILS = "1.2.8-initfail"  # Tracardi 1.2 whose init exits 3
ROLE_CRASH = "1.2.9-crash"  # Tracardi 1.2 whose background worker exits 3
QUICK = "--pull missing --window 1 --start-timeout 30 --liveness-timeout 15 --json"
TRIALS = int(os.environ.get("TRACARDI_E2E_SIGNAL_TRIALS", "3"))
SEED = int(os.environ.get("TRACARDI_E2E_SEED", "22"))
OUT = "/root/upgrade"  # .out .err .pid .rc of the upgrade run in the background
V12_UNITS = ["tracardi-background-function.service", "tracardi-background-logger.service",
             "tracardi-background-destination.service", "tracardi-apm.service",
             "tracardi-update.service"]
INTERRUPTED = "ac96b962b8484a6a8b0b4f6ae94680dc"  # the agent's UPGRADE_INTERRUPTED
RUNNING = "60c3b6c8b8784e7d8a0ce79772cfb433"  # the agent's UPGRADE_RUNNING
CONVERGE = [("upgrade --rollback", "upgrade --rollback --json --pull missing --window 1"),
            ("the same upgrade", "upgrade --image-tag {target} --json --pull missing --window 1"),
            ("install", f"install --env-file {ENV_SOURCE} --network host")]


@pytest.fixture(scope="module")
def images(tagged):  # noqa: F811
    build_standin_images(tagged, TRACARDI_12_IMAGES, TRACARDI_12_TAG)
    for tag, failing in ((INIT_FAILS, "tracardi/init"),
                         (ROLE_CRASH, "tracardi/background-worker")):
        build_standin_images(tagged, [i for i in TRACARDI_12_IMAGES if i != failing], tag=tag)
        build_standin_images(tagged, [failing], tag=tag, crash=True)
    return tagged


@pytest.fixture
def host(images):
    write_env(images)
    yield images
    uninstall_everything(images)
    images.run(f"rm -f {OUT}.*")


def start_upgrade(host, args: str) -> int:
    """`upgrade args` in the background; the tool's own pid."""
    host.run(f"rm -f {OUT}.*; setsid bash -c '(exec {TOOL} upgrade {args} >{OUT}.out "
             f"2>{OUT}.err) & echo $! >{OUT}.pid; wait $!; echo $? >{OUT}.rc' "
             ">/dev/null 2>&1 </dev/null &")
    return int(host.wait_until(f"test -s {OUT}.pid && cat {OUT}.pid", timeout=10))


def wait_for_line(host, text: str, timeout: float = 60) -> None:
    host.wait_until(f"grep -qF {shlex.quote(text)} {OUT}.err", timeout=timeout)


def finished(host, timeout: float = 180) -> tuple[int, dict, str]:
    """The background upgrade's exit status, its JSON report and its stderr."""
    rc = int(host.wait_until(f"test -s {OUT}.rc && cat {OUT}.rc", timeout=timeout))
    out = host.run(f"cat {OUT}.out").stdout
    return rc, json.loads(out) if out.strip() else {}, host.run(f"cat {OUT}.err").stdout


def runs(host, units: list[str]) -> dict[str, tuple[str, str]]:
    """Each unit's running container: (image reference, image id); units without one left
    out."""
    found = {}
    for unit in units:
        info = container(host, unit.removesuffix(".service"))
        if info and info["State"]["Running"]:
            found[unit] = (info["Config"]["Image"], info["Image"])
    return found


def all_running_on_one_tag(host, units: list[str], timeout: float = 60) -> str:
    """Wait until every unit is active with a running container, all of one tag; the tag."""
    deadline = time.monotonic() + timeout
    while True:
        active = host.run("systemctl is-active " + " ".join(units), check=False)
        seen = runs(host, units)
        tags = {image.rsplit(":", 1)[1] for image, _ in seen.values()}
        if active.returncode == 0 and len(seen) == len(units) and len(tags) == 1:
            return tags.pop()
        if time.monotonic() > deadline:
            raise AssertionError(f"not all running on one tag after {timeout:.0f} s: "
                                 f"{active.stdout.split()} {seen}")
        time.sleep(0.5)


def journal_ids(host, since: str) -> list[str]:
    out = host.run(f"journalctl --no-pager -o json --since '{since}' "
                   "SYSLOG_IDENTIFIER=tracardi-systemd").stdout
    return [json.loads(line).get("MESSAGE_ID", "") for line in out.splitlines()]


def image_id(host, ref: str) -> str:
    return host.run(f"docker image inspect --format '{{{{.Id}}}}' {ref}").stdout.strip()


def test_a_crash_onto_the_new_tag_and_a_moved_old_tag_are_undone_by_the_rollback(host):
    """And an install meanwhile is refused: it would have been undone by the rollback."""
    install(host)
    start_all(host)
    before = runs(host, WORKER_UNITS)
    env_before = host.run("sha256sum /etc/tracardi/.env-docker").stdout
    trigger = "tracardi-trigger.service"
    moved = "tracardi/update-worker:0.8.1"
    try:
        # update, gated first, fails its liveness check after 3 + 15 s
        pid = start_upgrade(host, f"--image-tag {DEAF} {QUICK} --window 3 "
                                  "--liveness-timeout 15")
        wait_for_line(host, "restarting tracardi-update.service")
        # the agent leaves the workers to the gate, and says so
        host.wait_until(f"journalctl -u tracardi-agent MESSAGE_ID={RUNNING} "
                        f"| grep -q 'pid {pid}'", timeout=15)
        assert "its gate has the workers" in host.run(
            "systemctl show -p StatusText --value tracardi-agent").stdout
        write_env(host, REDIS_PASSWORD="rotated")
        refused = install(host, check=False)
        assert refused.returncode == 1
        assert (f"the upgrade from image tag 0.8.1 to {DEAF} is running on / (pid {pid})"
                in refused.stderr)
        # While update is gated: trigger, not yet upgraded, crashes and systemd restarts it
        # on what its unit file names now; and the old tag is moved to another image.
        host.run("docker kill tracardi-trigger >/dev/null")
        host.wait_until("docker inspect -f '{{.Config.Image}}' tracardi-trigger "
                        f"| grep -qF ':{DEAF}'", timeout=30)
        host.run(f"docker tag tracardi/update-worker:{GOOD} {moved}")
        rc, report, err = finished(host)

        assert rc == 3, err
        assert report["failed_unit"] == "tracardi-update.service"
        assert "liveness check did not pass" in report["reason"]
        assert host.run("sha256sum /etc/tracardi/.env-docker").stdout == env_before
        assert all_running_on_one_tag(host, WORKER_UNITS) == "0.8.1"
        assert runs(host, WORKER_UNITS) == before, err  # the very images, by id
        assert image_id(host, moved) == before["tracardi-update.service"][1]
        assert report["workers"][trigger]["image_id"] == before[trigger][1]
        assert set(report["workers"]) == set(WORKER_UNITS)
        status = json.loads(tool(host, "status --json", check=False).stdout)
        assert {w["unit"]: w["image_id"] for w in status["workers"]} == {
            u: image for u, (_, image) in before.items()}
    finally:
        host.run(f"docker tag {before['tracardi-update.service'][1]} {moved}")


def test_sigterm_and_sigkill_at_random_moments_converge_on_one_tag(host):
    """Each trial upgrades five workers from one tag to the other and signals the tool at a
    seeded random moment; after a SIGKILL the next `upgrade --rollback`, the same upgrade
    again, or `install` (in turn) converges every unit on one tag."""
    rng = random.Random(SEED)
    install(host)
    start_all(host)
    tags = ["0.8.1", GOOD]
    figures, recovered = [], 0
    for trial, signame in enumerate(["TERM", "KILL"] * TRIALS):
        current = all_running_on_one_tag(host, WORKER_UNITS)
        target = tags[1 - tags.index(current)]
        since = host.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
        delay = rng.uniform(0.5, 14)
        started = time.monotonic()
        pid = start_upgrade(host, f"--image-tag {target} {QUICK}")
        time.sleep(max(0.0, delay - (time.monotonic() - started)))
        host.run(f"kill -{signame} {pid}", check=False)
        rc, report, err = finished(host)
        if signame == "TERM" and rc == 143:
            # during the interpreter's start, before the tool could do anything at all
            assert err == "", err
        elif signame == "TERM":
            assert rc in (0, 3), err  # 0: it was done before the signal came
            if rc == 3:
                assert report["reason"] == "interrupted by SIGTERM", err
                assert UpgradeEvent.ROLLED_BACK.value in journal_ids(host, since)
        else:
            assert rc in (0, 137), err
            if rc == 137:
                status = tool(host, "status --json", check=False)
                upgrade = json.loads(status.stdout)["upgrade"]
                if upgrade:  # killed after the record was written
                    assert "was interrupted" in upgrade
                    host.wait_until(f"journalctl --since '{since}' -u tracardi-agent "
                                    f"MESSAGE_ID={INTERRUPTED} | grep -q 'was interrupted'",
                                    timeout=40)
                    # the three ways out: roll back, the same upgrade again, install
                    label, way = CONVERGE[recovered % len(CONVERGE)]
                    recovered += 1
                    converge = tool(host, way.format(target=target), check=False, timeout=300)
                    assert converge.returncode == 0, converge.stderr
                    if way.startswith("upgrade"):
                        assert UpgradeEvent.RECOVERED.value in journal_ids(host, since)
                    else:
                        assert "was interrupted" in converge.stdout, converge.stdout
                    rc = f"137, recovered by {label}"
        tag = all_running_on_one_tag(host, WORKER_UNITS)
        status = json.loads(tool(host, "status --json", check=False).stdout)
        assert status["upgrade"] == "", status
        figures.append(f"{trial}: SIG{signame} at {delay:.1f} s -> exit {rc}, on {tag}")
    print("\n".join(figures))


def test_12_init_gated_first_and_the_moving_tag_rolled_back_to(host):
    write_env(host, **SETTINGS_12)
    install(host, "--tracardi-version 1.2.0 --start")
    for unit in V12_UNITS:
        wait_running(host, unit.removesuffix(".service"))
    before = {u: c["Id"] for u in V12_UNITS if (c := container(host, u.removesuffix(".service")))}

    failed = tool(host, f"upgrade --image-tag {INIT_FAILS} {QUICK}", check=False, timeout=300)

    report = json.loads(failed.stdout)
    assert failed.returncode == 3, failed.stderr
    assert report["failed_unit"] == "tracardi-init.service"
    assert "it failed on 1.2.8-initfail" in report["reason"]
    after = {u: c["Id"] for u in V12_UNITS if (c := container(host, u.removesuffix(".service")))}
    assert after == before  # no worker was touched
    assert all_running_on_one_tag(host, V12_UNITS) == TRACARDI_12_TAG
    assert host.run("systemctl is-active tracardi-init.service").stdout.strip() == "active"
    assert "tracardi/init:1.2.x" in host.run("systemctl cat tracardi-init.service").stdout

    crashed = tool(host, f"upgrade --image-tag {ROLE_CRASH} {QUICK}", check=False, timeout=300)

    report = json.loads(crashed.stdout)
    assert crashed.returncode == 3, crashed.stderr
    assert (report["from_tag"], report["failed_unit"]) == (
        TRACARDI_12_TAG, "tracardi-background-function.service")
    assert all_running_on_one_tag(host, V12_UNITS) == TRACARDI_12_TAG
