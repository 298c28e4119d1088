"""The agent's idle cost after a reinstall with fewer workers (issue 23).

    .venv/bin/python benchmarks/agent_after_shrink.py

The sandbox runs the five 0.8.1 stand-in workers under the installed agent (its defaults:
a tick every 10 s, a reconcile every 60 s while nothing happens), the scheduler failing
until the agent holds it in backoff; then `install` again without the scheduler. Once the
agent has read the new manifest, its CPU (its threads plus the systemctl clients it ran
and reaped: utime + stime + cutime + cstime of /proc/PID/stat) is read over PERIODS
periods of 60 s, and the median period is reported. Before issue 23 the gone unit stayed
in the agent's history in backoff, which kept it from settling: it asked systemd (a
`systemctl` client) every tick instead of every reconcile period.
"""

from __future__ import annotations

import json
import statistics
import time

from common import install, log, sandbox_host, write_env

PERIODS = 3
PERIOD = 60.0
GAVE_UP = "9c2e7344316c42fcbd4d6f148245cdd9"
RELOADED = "175bae9feaaa485d88c5641561a70283"


def cpu_seconds(host, pid: str) -> float:
    fields = host.run(f"cat /proc/{pid}/stat").stdout.rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / int(host.run("getconf CLK_TCK").stdout)


def main() -> None:
    with sandbox_host() as host:
        write_env(host, STANDIN_FAIL_SCHEDULER="1")
        since = host.run("date +%s").stdout.strip()
        install(host, "--start")
        log("waiting for the agent to give the scheduler a backoff")
        host.wait_until(f"journalctl -q --since @{since} MESSAGE_ID={GAVE_UP} | grep -q .",
                        timeout=300)
        install(host, "--worker update --worker segmentation --worker post-collection "
                "--worker trigger")
        host.wait_until(f"journalctl -q --since @{since} MESSAGE_ID={RELOADED} | grep -q .",
                        timeout=60)
        time.sleep(15)
        pid = host.run("systemctl show -p MainPID --value tracardi-agent").stdout.strip()
        state = json.loads(host.run("cat /run/tracardi-systemd/agent-state.json").stdout)
        shares = []
        for period in range(PERIODS):
            before = cpu_seconds(host, pid)
            time.sleep(PERIOD)
            used = cpu_seconds(host, pid) - before
            shares.append(100 * used / PERIOD)
            log(f"period {period + 1}: {used:.2f} s of CPU ({shares[-1]:.3f} % of a core)")
        print(json.dumps({"units_in_state_file": sorted(state["workers"]),
                          "idle_percent_median": round(statistics.median(shares), 3),
                          "idle_percent_periods": [round(s, 3) for s in shares]}))


if __name__ == "__main__":
    main()
