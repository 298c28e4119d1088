"""`upgrade` on a real systemd + Docker host: a tag that works, a tag whose stand-in of the
last worker crash-loops (everything rolled back), a later --rollback, a pull that fails."""

from __future__ import annotations

import json

import pytest

from tracardi_systemd.upgrade.run import UpgradeEvent

from .operator import (
    WORKER_UNITS,
    container,
    install,
    start_all,
    tool,
    uninstall_everything,
    wait_entries,
    wait_running_tag,
)
from .operator import write_env as write_env_file
from .standin import TRACARDI_081_IMAGES, build_standin_images

GOOD = "0.8.2"
CRASHING = "0.8.3-crash"  # the trigger worker's image exits 3 at once
DEAF = "0.8.4-deaf"  # the update worker runs but never answers its liveness check
FAST = "--pull missing --window 2 --liveness-timeout 15 --json"


@pytest.fixture(scope="module")
def tagged(sandbox):
    build_standin_images(sandbox, tag=GOOD)
    trigger = "tracardi/com-tracardi-trigger-worker"
    build_standin_images(sandbox, [i for i in TRACARDI_081_IMAGES if i != trigger],
                         tag=CRASHING)
    build_standin_images(sandbox, [trigger], tag=CRASHING, crash=True)
    build_standin_images(sandbox, TRACARDI_081_IMAGES[:1], tag=DEAF, liveness_fails=True)
    build_standin_images(sandbox, TRACARDI_081_IMAGES[1:], tag=DEAF)
    return sandbox


@pytest.fixture
def host(tagged):
    write_env_file(tagged)
    yield tagged
    uninstall_everything(tagged)


def upgrade(host, args: str):
    result = tool(host, f"upgrade {args}", check=False, timeout=300)
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def journal_entries(host, event: UpgradeEvent, to_tag: str) -> list[dict]:
    """The entries of `event` for an upgrade to `to_tag`, once there is one."""
    return wait_entries(host, f"MESSAGE_ID={event.value}", f"TRACARDI_TO_TAG={to_tag}")


def test_upgrade_then_a_crash_looping_tag_is_rolled_back_then_rollback_later(host):
    install(host)
    before = start_all(host)

    done, report = upgrade(host, f"--image-tag {GOOD} {FAST}")

    assert done.returncode == 0, done.stderr
    assert (report["result"], report["from_tag"], report["to_tag"]) == ("done", "0.8.1", GOOD)
    wait_running_tag(host, GOOD)
    restarted = [line for line in done.stderr.splitlines() if line.startswith("restarting")]
    assert restarted == [f"restarting {unit} on {GOOD}" for unit in WORKER_UNITS]
    assert all(container(host, u.removesuffix(".service"))["Id"] != before[u]
               for u in WORKER_UNITS)

    failed, report = upgrade(host, f"--image-tag {CRASHING} {FAST}")

    assert failed.returncode == 3, failed.stderr
    assert report["result"] == "rolled back"
    assert report["failed_unit"] == "tracardi-trigger.service"
    assert "crash-looping" in report["reason"] or "stopped running" in report["reason"]
    assert f"error: upgrade from image tag {GOOD} to {CRASHING} rolled back" in failed.stderr
    wait_running_tag(host, GOOD)
    unit_files = host.run("grep -h ':0\\.8\\.' /etc/systemd/system/tracardi-*.service").stdout
    assert CRASHING not in unit_files
    rolled = journal_entries(host, UpgradeEvent.ROLLED_BACK, CRASHING)
    assert len(rolled) == 1
    assert rolled[0]["TRACARDI_UNIT"] == "tracardi-trigger.service"
    assert rolled[0]["SYSLOG_IDENTIFIER"] == "tracardi-systemd"
    assert rolled[0]["PRIORITY"] == "3"
    for tag in (GOOD, CRASHING):
        assert journal_entries(host, UpgradeEvent.STARTED, tag)
    assert journal_entries(host, UpgradeEvent.DONE, GOOD)

    back, report = upgrade(host, f"--rollback {FAST}")

    assert back.returncode == 0, back.stderr
    assert (report["from_tag"], report["to_tag"]) == (GOOD, "0.8.1")
    wait_running_tag(host, "0.8.1")


def test_a_pull_that_fails_restarts_nothing(host):
    install(host)
    before = start_all(host)

    result, _ = upgrade(host, f"--image-tag {GOOD}")  # --pull always: no registry here

    assert result.returncode == 1
    assert f"docker pull tracardi/update-worker:{GOOD} failed" in result.stderr
    assert "no worker was restarted, they all still run 0.8.1" in result.stderr
    assert "use --pull missing" in result.stderr
    after = {u: container(host, u.removesuffix(".service"))["Id"] for u in WORKER_UNITS}
    assert after == before
    assert "0.8.1" in host.run("grep -h 'update-worker:' "
                               "/etc/systemd/system/tracardi-update.service").stdout


def test_dry_run_shows_the_plan_and_changes_nothing(host):
    install(host)
    start_all(host)
    manifest = host.run("cat /var/lib/tracardi-systemd/manifest.json").stdout

    result = tool(host, f"upgrade --image-tag {GOOD} --dry-run")

    assert result.stdout.startswith(f"upgrade from image tag 0.8.1 to {GOOD}")
    for unit in WORKER_UNITS:
        assert f"restart {unit}, then wait for it" in result.stdout
    assert host.run("cat /var/lib/tracardi-systemd/manifest.json").stdout == manifest


def test_a_worker_failing_its_liveness_check_is_rolled_back(host):
    install(host)
    start_all(host)

    result, report = upgrade(host, f"--image-tag {DEAF} --pull missing --window 1 "
                                   "--liveness-timeout 3 --json")

    assert result.returncode == 3, result.stderr
    assert report["failed_unit"] == "tracardi-update.service"
    assert "liveness check did not pass within 3.0 s" in report["reason"]
    wait_running_tag(host, "0.8.1")
