"""Cold start of all workers (issue 6, item 2).

    .venv/bin/python benchmarks/cold_start.py

`systemctl start tracardi.target` to every worker container started (docker `start`
events), with 5 workers and with 50 units (10 replicas of each worker), against the same
number of `docker run -d --restart=always` of the stand-in launched all at once from a
shell, which is what an operator without this tool would type.
"""

from __future__ import annotations

import contextlib
import sys
import time

from common import (
    IMAGE,
    TOOL,
    WORKERS,
    Events,
    emit,
    install,
    log,
    machine,
    median,
    memory_kib,
    ms,
    running_count,
    sandbox_host,
    sh,
    table,
    wait_for,
)

SIZES = [(5, 5), (50, 3)]  # (units, runs)


# ---------------------------------------------------------------- inside the sandbox

def wait_started(events: Events, count: int, prefix: str, began: float) -> tuple[float, float]:
    """Seconds from `began` to the first and to the `count`-th container started."""
    names: dict[str, float] = {}
    while len(names) < count:
        event = events.wait(lambda e: e.action == "start" and e.name.startswith(prefix), 120)
        if event is None:
            raise RuntimeError(f"only {len(names)} of {count} containers started")
        names.setdefault(event.name, event.time)
    return min(names.values()) - began, max(names.values()) - began


def client_pss_mib() -> float:
    """Proportional memory of the `docker run` clients the units keep in the foreground."""
    total = 0
    for pid in sh("pgrep -f '^/usr/bin/docker run'", check=False).split():
        with contextlib.suppress(OSError):
            total += memory_kib(int(pid))["pss"]
    return total / 1024


def cold(count: int, runs: int) -> dict:
    first, last, pss = [], [], 0.0
    for _ in range(runs):
        events = Events()
        began = time.time()
        sh("systemctl start tracardi.target")
        a, b = wait_started(events, count, "tracardi-", began)
        first.append(a)
        last.append(b)
        events.close()
        time.sleep(2)
        pss = client_pss_mib()
        sh("systemctl stop tracardi.target")
        wait_for(lambda: running_count() == 0, 120)
    return {"first": first, "all": last, "client_pss_mib": pss}


def docker_baseline(count: int, runs: int) -> dict:
    last = []
    for _ in range(runs):
        events = Events()
        began = time.time()
        sh(" ".join(f"docker run -d --restart=always --init --network host --name base-{i} "
                    f"{IMAGE} >/dev/null &" for i in range(count)) + " wait")
        last.append(wait_started(events, count, "base-", began)[1])
        events.close()
        sh("docker rm -f $(docker ps -aq --filter name=base-) >/dev/null")
    return {"all": last}


# ---------------------------------------------------------------- outside

def measure() -> dict:
    from common import inside

    results = {}
    with sandbox_host() as host:
        for count, runs in SIZES:
            per_worker = count // len(WORKERS)
            replicas = " ".join(f"--replicas {w}={per_worker}" for w in WORKERS
                                if per_worker > 1)
            log(f"{count} units: tracardi.target x {runs}")
            install(host, replicas)
            ours = inside(host, __file__, "cold", count, runs)
            host.run(f"{TOOL} uninstall --purge >/dev/null")
            log(f"{count} units: docker run -d x {runs}")
            theirs = inside(host, __file__, "docker", count, runs)
            results[count] = {"ours": ours, "docker": theirs}
        log("shutting down")
    log("done")
    return results


def report(results: dict) -> str:
    rows = []
    for count, result in results.items():
        ours, theirs = result["ours"], result["docker"]
        rows.append([count, len(ours["all"]), ms(median(ours["first"])), ms(median(ours["all"])),
                     ms(median(theirs["all"])),
                     f"{median(ours['all']) / median(theirs['all']):.2f}",
                     f"{ours['client_pss_mib']:.0f} MiB "
                     f"({ours['client_pss_mib'] / count:.1f} per unit)"])
    return "\n".join([
        "### Cold start: `systemctl start tracardi.target` to all containers started", "",
        table(["units", "runs", "first container", "all containers (median)",
               "`docker run -d` x N at once (median)", "ratio", "memory of the units' "
               "foreground `docker run` clients (PSS)"], rows), "",
        "No target in the issue. The units start in parallel (nothing orders one worker after "
        "another), and nothing runs before a unit's `docker run` (no ExecStartPre= since "
        "issue 11). Each unit keeps its `docker run` client in the foreground for the life "
        "of the worker: the memory column, the per-unit price of systemd supervising the "
        "client; `docker run -d` leaves no client behind.",
    ])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        mode, count, runs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        emit(cold(count, runs) if mode == "cold" else docker_baseline(count, runs))
        return
    results = measure()
    print(f"Machine: {machine()}\n")
    print(report(results))


if __name__ == "__main__":
    main()
