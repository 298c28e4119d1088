"""Three-host rollout with the Ansible role (issue 14).

    .venv/bin/python benchmarks/fleet_rollout.py

Three sandbox hosts booted side by side (tests/e2e/fleet.py), reached by Ansible through
the tests' `sandbox` connection plugin (nsenter, no SSH, no network), the tool being the
checkout's venv (install method `present`). Timed from the controller, wall clock of
`ansible-playbook`:

- fresh rollout: site.yml on three hosts with nothing installed, until every host's
  `status --json` says healthy; between runs every host is uninstalled again;
- second run: site.yml again, nothing to change;
- rolling upgrade: upgrade.yml (serial 1) to a tag whose stand-ins work, gate window 2 s,
  then back to 0.8.1 the same way;
- baseline: the same three installs without Ansible, `install --start` and `status --json`
  until healthy, one host after another through Sandbox.run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import log, machine, median, secs, table

from tests.e2e.fleet import NEW_TAG, booted_fleet, playbook, recap, write_inventory
from tests.e2e.operator import TOOL, install, uninstall_everything, write_env

NAMES = ["host1", "host2", "host3"]
RUNS = 3
STAGE = "/etc/tracardi/env-docker.ansible"


def timed_playbook(name: str, inventory: Path, *args: str) -> tuple[float, dict]:
    began = time.monotonic()
    result = playbook(name, inventory, *args)
    took = time.monotonic() - began
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    return took, recap(result.stdout)


def reset(hosts: dict) -> None:
    for host in hosts.values():
        uninstall_everything(host)
        host.run(f"rm -f {STAGE}")


def direct(hosts: dict) -> float:
    """install --start and status until healthy on each host in turn, without Ansible."""
    began = time.monotonic()
    for host in hosts.values():
        write_env(host)
        install(host, "--start")
        host.wait_until(f"{TOOL} status --json >/dev/null", timeout=120)
    return time.monotonic() - began


def measure() -> dict:
    results: dict[str, list[float]] = {"fresh": [], "again": [], "upgrade": [], "back": [],
                                       "direct": []}
    began = time.monotonic()
    with booted_fleet(NAMES) as hosts:
        results["boot"] = [time.monotonic() - began]
        inventory = write_inventory(Path(tempfile.mkdtemp(prefix="fleet-bench-")), hosts)
        for run in range(RUNS):
            log(f"run {run + 1}/{RUNS}: fresh rollout")
            took, counts = timed_playbook("site.yml", inventory)
            results["fresh"].append(took)
            log(f"run {run + 1}/{RUNS}: second run")
            took, counts = timed_playbook("site.yml", inventory)
            assert all(c["changed"] == 0 for c in counts.values()), counts
            results["again"].append(took)
            if run == 0:
                log("rolling upgrade and back")
                for tag, key in ((NEW_TAG, "upgrade"), ("0.8.1", "back")):
                    took, _ = timed_playbook("upgrade.yml", inventory, "-e",
                                             f"tracardi_systemd_upgrade_tag={tag}")
                    results[key].append(took)
            reset(hosts)
            log(f"run {run + 1}/{RUNS}: without Ansible")
            results["direct"].append(direct(hosts))
            reset(hosts)
        log("shutting down")
    log("done")
    return results


def report(results: dict) -> str:
    def row(label: str, key: str) -> list[object]:
        values = results[key]
        return [label, len(values), secs(median(values)), secs(min(values)), secs(max(values)),
                secs(median(values) / len(NAMES))]

    rows = [
        row("fresh rollout: site.yml, 3 hosts, until healthy", "fresh"),
        row("second run: site.yml, nothing changed", "again"),
        row(f"rolling upgrade 0.8.1 -> {NEW_TAG}: upgrade.yml, serial 1, window 2 s", "upgrade"),
        row(f"rolling upgrade {NEW_TAG} -> 0.8.1 (same)", "back"),
        row("baseline: install --start + status, 3 hosts in turn, no Ansible", "direct"),
    ]
    ratio = median(results["fresh"]) / median(results["direct"])
    return "\n".join([
        "### Three-host rollout with the Ansible role", "",
        table(["what", "runs", "median", "min", "max", "median per host"], rows), "",
        f"Three sandboxes booted side by side (images built, Redis up) in "
        f"{secs(results['boot'][0])}. The fresh rollout takes {ratio:.1f}x the baseline: "
        "Ansible's own cost per task and host (the role runs about 10 tasks), the hosts in "
        "parallel (forks 5). A rolling upgrade restarts 5 workers per host one at a time, "
        "each gated for the window, hosts one after another: it grows with hosts x workers "
        "x window (the default window is 30 s, so about 2.5 min per host).",
    ])


def main() -> None:
    results = measure()
    print(f"Machine: {machine()}\n")
    print(report(results))


if __name__ == "__main__":
    sys.exit(main())
