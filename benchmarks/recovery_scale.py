"""Recovery after a crash as the host fills up: 1 unit, 60 and 200 containers (issue 24).

    .venv/bin/python benchmarks/recovery_scale.py [--kills 10]

At each level the same two setups are killed in turn (SIGKILL of the container's main
process, as recovery.py does): a. this project's unit with its agent, b. `docker run -d
--restart=always`, each with PER_SETUP containers (one at the "1 unit" level); idle
containers of the stand-in image fill the host up to the level's count. Every figure is
printed with the host's mount and container counts at the time of the kills: systemd's
sandbox setup walks the mount table, and every container adds to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import (
    IMAGE,
    TOOL,
    emit,
    inside,
    install,
    log,
    machine,
    median,
    ms,
    sandbox_host,
    sh,
    table,
    verdict,
)
from recovery import kills, totals

LEVELS = ((1, 1), (60, 5), (200, 5))  # (containers on the host, containers per setup)
TARGETS = {1: None, 60: 1.0, 200: 1.2}  # the ratio a/b at most; None: no target
BOUND = 30.0


def run_inside(argv: list[str]) -> None:
    if argv[0] == "counts":
        emit({"mounts": len(Path("/proc/self/mountinfo").read_text().splitlines()),
              "containers": len(sh("docker ps -q").split())})
    else:
        setups = dict(item.split("=", 1) for item in argv[2:])
        emit(kills("crash", int(argv[1]), BOUND, {k: v.split(",") for k, v in setups.items()}))


def measure(kill_count: int) -> list[dict]:
    results = []
    for total, per_setup in LEVELS:
        with sandbox_host() as host:
            log(f"level {total}: {per_setup} per setup")
            install(host, f"--worker scheduler --replicas scheduler={per_setup}"
                    if per_setup > 1 else "--worker scheduler")
            host.run("systemctl start tracardi.target")
            ours = ([f"tracardi-scheduler-{i}" for i in range(1, per_setup + 1)]
                    if per_setup > 1 else ["tracardi-scheduler"])
            for i in range(1, per_setup + 1):
                host.run(f"docker run -d --restart=always --init --network host "
                         f"--name dockerrs-{i} {IMAGE} >/dev/null")
            idle = max(0, total - 2 * per_setup)
            host.run(f"for i in $(seq {idle}); do docker run -d --rm --network none "
                     f"--name idle-$i --entrypoint /bin/sleep {IMAGE} infinity >/dev/null; "
                     "done", timeout=1200)
            host.wait_until(f"[ $(docker ps -q --filter status=running | wc -l) -ge "
                            f"{max(total, 2)} ]", timeout=300)
            counts = inside(host, __file__, "counts")
            log(f"{counts['containers']} containers, {counts['mounts']} mounts; kills")
            setups = {"a": ",".join(ours),
                      "b": ",".join(f"dockerrs-{i}" for i in range(1, per_setup + 1))}
            measured = inside(host, __file__, "kills", kill_count,
                              *(f"{k}={v}" for k, v in setups.items()), timeout=3600)
            host.run(f"{TOOL} uninstall --purge >/dev/null", check=False, timeout=300)
        results.append({"level": total, **counts, "a": totals(measured["a"]),
                        "b": totals(measured["b"]),
                        "lost": {k: len(v) - len(totals(v)) for k, v in measured.items()}})
    return results


def report(results: list[dict]) -> str:
    rows, lines = [], []
    for r in results:
        a, b = median(r["a"]), median(r["b"])
        ratio = a / b
        rows.append([r["level"], r["containers"], r["mounts"], f"{len(r['a'])}/{len(r['b'])}",
                     ms(a), ms(b), f"{ratio:.2f}"])
        target = TARGETS[r["level"]]
        if target is not None:
            lines.append(f"Target, recovery with {r['containers']} containers and "
                         f"{r['mounts']} mounts on the host at most {target:.1f}x Docker's "
                         f"restart policy: {ratio:.2f}x, {verdict(ratio <= target)}.")
    return "\n".join([
        "### Recovery as the host fills up (SIGKILL of the main process; a. this project's "
        "unit + agent, b. `docker run -d --restart=always`)", "",
        table(["level", "containers", "mounts", "kills a/b", "a median", "b median",
               "a / b"], rows), "", *lines])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        run_inside(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per setup and level")
    args = parser.parse_args()
    results = measure(args.kills)
    print(f"Machine: {machine()}\n")
    print(report(results))


if __name__ == "__main__":
    main()
