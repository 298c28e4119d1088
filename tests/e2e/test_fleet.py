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
from .operator import BASE_SETTINGS, ELASTIC_PASSWORD, LICENSE, TOOL

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


def test_check_mode_changes_nothing_and_a_boolean_setting_reaches_tracardi_as_yes(tmp_path):
    """--check runs install --dry-run and leaves the host as it was; a YAML boolean is
    written yes (True would mean false to Tracardi); a change of settings restarts the
    workers, not the target."""
    require_host()
    if not ansible_available():
        pytest.fail("ansible-playbook is missing from .venv: . scripts/venv.sh test")
    with booted_fleet(["solo"]) as hosts:
        host = hosts["solo"]
        inventory = write_inventory(tmp_path, hosts)
        settings = {"tracardi_systemd_env": {**BASE_SETTINGS, "ELASTIC_VERIFY_CERTS": True}}
        extra = ["-e", json.dumps(settings)]
        look = ("find /etc/systemd/system /etc/tracardi /var/lib/tracardi-systemd "
                "-name '*tracardi*' 2>/dev/null | sort")
        before = host.run(look, check=False).stdout

        checked = playbook("site.yml", inventory, "--check", *extra)

        assert checked.returncode == 0, output(checked)
        assert recap(checked.stdout)["solo"]["changed"] >= 1, output(checked)
        assert host.run(look, check=False).stdout == before
        assert host.run("docker ps -q --filter label=tracardi.managed=true").stdout == ""

        applied = playbook("site.yml", inventory, *extra)

        assert applied.returncode == 0, output(applied)
        installed = host.run("cat /etc/tracardi/.env-docker").stdout
        assert "ELASTIC_VERIFY_CERTS=yes\n" in installed
        host.run("test ! -e /etc/tracardi/env-docker.ansible")
        target_since = host.run("systemctl show -p ActiveEnterTimestampMonotonic --value "
                                "tracardi.target").stdout
        ids = container_ids(host)

        settings["tracardi_systemd_env"]["LOGGING_LEVEL"] = "DEBUG"
        changed = playbook("site.yml", inventory, "-e", json.dumps(settings))

        assert changed.returncode == 0, output(changed)
        assert "RUNNING HANDLER [tracardi_systemd : Restart the tracardi units whose files " \
               "changed]" in changed.stdout
        host.wait_until("systemctl is-active -q " + " ".join(
            f"{w}.service" for w in sorted(WORKERS)), timeout=60)
        assert not set(container_ids(host).split()) & set(ids.split())  # each restarted
        assert host.run("systemctl show -p ActiveEnterTimestampMonotonic --value "
                        "tracardi.target").stdout == target_since
