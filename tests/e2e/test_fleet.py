"""The Ansible role on three sandbox hosts: a fresh rollout, a second run that changes
nothing, and a rolling upgrade that stops at the host whose new image crash-loops."""

from __future__ import annotations

import json

import pytest

from .conftest import require_host
from .fleet import (
    NEW_TAG,
    ansible_available,
    booted_fleet,
    container_ids,
    playbook,
    recap,
    worker_images,
    write_inventory,
)
from .operator import ELASTIC_PASSWORD, LICENSE, TOOL

# Its three hosts boot the machine's own root (fleet.py): the Debian 13 tier would run
# the same hosts with the Debian 13 tool's path, which that root does not have.
pytestmark = pytest.mark.machine_release_only

NAMES = ["host1", "host2", "host3"]
WORKERS = {"tracardi-update", "tracardi-segmentation", "tracardi-scheduler",
           "tracardi-post-collection", "tracardi-trigger"}


@pytest.fixture(scope="module")
def fleet():
    require_host()
    if not ansible_available():
        pytest.fail("ansible-playbook is missing from .venv: . scripts/venv.sh test")
    with booted_fleet(NAMES, crash_new_tag_on="host2") as hosts:
        yield hosts


def output(result) -> str:
    return f"--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"


def test_rollout_rerun_and_rolling_upgrade_that_stops_at_the_host_that_rolled_back(
        fleet, tmp_path):
    inventory = write_inventory(tmp_path, fleet)

    first = playbook("site.yml", inventory)

    assert first.returncode == 0, output(first)
    counts = recap(first.stdout)
    assert set(counts) == set(NAMES)
    for name, host in fleet.items():
        assert counts[name]["failed"] == 0 and counts[name]["changed"] >= 2, counts
        assert worker_images(host) == dict.fromkeys(WORKERS, "0.8.1")
        assert json.loads(host.wait_until(f"{TOOL} status --json", timeout=60))["healthy"]
    for secret in (LICENSE, ELASTIC_PASSWORD):
        assert secret not in first.stdout + first.stderr

    second = playbook("site.yml", inventory)

    assert second.returncode == 0, output(second)
    assert {name: c["changed"] for name, c in recap(second.stdout).items()} == dict.fromkeys(
        NAMES, 0), output(second)

    untouched = container_ids(fleet["host3"])
    manifest3 = fleet["host3"].run("cat /var/lib/tracardi-systemd/manifest.json").stdout

    upgrade = playbook("upgrade.yml", inventory, "-e", f"tracardi_systemd_upgrade_tag={NEW_TAG}")

    assert upgrade.returncode != 0, output(upgrade)
    counts = recap(upgrade.stdout)
    assert counts["host1"]["failed"] == 0 and counts["host1"]["changed"] == 1, counts
    assert counts["host2"]["failed"] == 1, counts
    assert counts.get("host3", {}).get("ok", 0) == 0, counts
    assert "fatal: [host2]" in upgrade.stdout
    assert f"host2: the upgrade to {NEW_TAG} failed (exit status 3" in upgrade.stdout
    assert "rolled back" in upgrade.stdout
    assert worker_images(fleet["host1"]) == dict.fromkeys(WORKERS, NEW_TAG)
    fleet["host2"].wait_until("systemctl is-active " + " ".join(
        f"{w}.service" for w in sorted(WORKERS)), timeout=30)
    assert worker_images(fleet["host2"]) == dict.fromkeys(WORKERS, "0.8.1")
    assert container_ids(fleet["host3"]) == untouched
    assert fleet["host3"].run("cat /var/lib/tracardi-systemd/manifest.json").stdout == manifest3
