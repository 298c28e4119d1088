"""What each hardening directive of a worker unit costs at a start, against the host's
mount count (issue 24).

    .venv/bin/python benchmarks/hardening_cost.py [--runs 15]

systemd sets a unit's sandbox up at every exec of it: a mount namespace walks the host's
whole mount table (every container adds to it), a user or network namespace is created,
a seccomp filter compiled. A worker's restart pays this for its ExecStopPost= and its
ExecStart=. Each variant below is `systemd-run --wait -p ... /bin/true`, timed from this
process (wall time), interleaved with the others so that they see the same noise, at the
sandbox's own mount count and with tmpfs mounts added to stand for 60 and 200 containers'
mounts (a running container adds about one: its overlay root; measured below).

Variants: the plain start; the worker units' sandbox before issue 24 and each of its
directives alone; the sandbox as this checkout renders it ("shipped"), and shipped plus
each file-system protection it leaves out, which tells what taking one back would cost.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import (
    ENV_SOURCE,
    IMAGE,
    TOOL,
    emit,
    inside,
    log,
    machine,
    median,
    ms,
    sandbox_host,
    sh,
    table,
)

MOUNT_LEVELS = (0, 60, 200)  # tmpfs mounts added, standing for that many containers
EXTRA_MOUNTS = Path("/run/tracardi-bench-mounts")
# Directives that only make sense together are timed together.
GROUPS = {"ProcSubset": "ProtectProc", "SystemCallErrorNumber": "SystemCallFilter",
          "SystemCallArchitectures": "SystemCallFilter"}
# The worker units' sandbox before issue 24 (exposure 0.8), the baseline of the table.
BEFORE = [
    "NoNewPrivileges=yes", "CapabilityBoundingSet=", "ProtectSystem=strict",
    "ProtectHome=read-only", "PrivateDevices=yes", "PrivateIPC=yes", "PrivateMounts=yes",
    "PrivateUsers=yes", "ProtectClock=yes", "ProtectHostname=yes", "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
    "RestrictNamespaces=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
    "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "RemoveIPC=yes",
    "SystemCallArchitectures=native", "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources", "SystemCallErrorNumber=EPERM", "UMask=0077",
    "PrivateNetwork=yes", "RestrictAddressFamilies=AF_UNIX", "PrivateTmp=yes",
    "ProtectProc=ptraceable", "ProcSubset=pid",
]


# ---------------------------------------------------------------- inside the sandbox

def shipped_hardening() -> list[str]:
    """The worker unit's sandbox directives as this checkout renders them."""
    out = Path("/tmp/hardening-cost-units")
    sh(f"{TOOL} render --env-file {ENV_SOURCE} --network host --worker scheduler --out {out}")
    text = (out / "tracardi-scheduler.service").read_text()
    service = text.split("[Service]", 1)[1].split("\n[", 1)[0]
    known = {line.split("=", 1)[0] for line in BEFORE} | {"IPAddressDeny", "DevicePolicy",
                                                         "DeviceAllow"}
    return [line for line in service.splitlines()
            if "=" in line and line.split("=", 1)[0] in known]


def variants(shipped: list[str]) -> dict[str, list[str]]:
    """Name -> the properties of the variant."""
    groups: dict[str, list[str]] = {}
    for line in BEFORE:
        name = line.split("=", 1)[0]
        groups.setdefault(GROUPS.get(name, name), []).append(line)
    left_out = {name: lines for name, lines in groups.items()
                if not set(lines) <= set(shipped)}
    return {"none": [], "before issue 24 (all)": BEFORE, "shipped": shipped,
            **{f"shipped + {name}": shipped + lines for name, lines in left_out.items()},
            **{f"{name} alone": lines for name, lines in groups.items()}}


def time_start(properties: list[str]) -> float:
    argv = ["systemd-run", "--wait", "--quiet", "--collect", "--property=Type=exec"]
    argv += [f"--property={p}" for p in properties] + ["/bin/true"]
    began = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - began


def add_mounts(count: int) -> None:
    EXTRA_MOUNTS.mkdir(exist_ok=True)
    for i in range(count):
        point = EXTRA_MOUNTS / str(i)
        if not point.is_dir():
            point.mkdir()
            sh(f"mount -t tmpfs -o size=1k bench{i} {point}")


def mount_count() -> int:
    return len(Path("/proc/self/mountinfo").read_text().splitlines())


def container_mounts() -> float:
    """Mounts one running container adds to the host (median of 5 containers)."""
    before = mount_count()
    sh(f"for i in 1 2 3 4 5; do docker run -d --rm --name mounts-$i {IMAGE} >/dev/null; done")
    added = (mount_count() - before) / 5
    sh("docker rm -f mounts-1 mounts-2 mounts-3 mounts-4 mounts-5 >/dev/null")
    return added


def measure_inside(runs: int) -> dict:
    shipped = shipped_hardening()
    cases = variants(shipped)
    per_container = container_mounts()
    levels = []
    for level in MOUNT_LEVELS:
        add_mounts(level)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for props in cases.values():  # warm-up, not counted
            time_start(props)
        for _ in range(runs):
            for name, props in cases.items():
                times[name].append(time_start(props))
        levels.append({"added": level, "mounts": mount_count(),
                       "median": {name: median(t) for name, t in times.items()}})
        log(f"{mount_count()} mounts done")
    return {"levels": levels, "per_container": per_container,
            "shipped": shipped}


# ---------------------------------------------------------------- outside

def report(result: dict) -> str:
    levels = result["levels"]
    header = ["variant", *(f"{lv['mounts']} mounts (+{lv['added']})" for lv in levels)]
    names = list(levels[0]["median"])
    none = [lv["median"]["none"] for lv in levels]
    rows = []
    for name in names:
        cells = []
        for lv, base in zip(levels, none, strict=True):
            value = lv["median"][name]
            cells.append(ms(value) if name == "none" else f"{ms(value)} (+{ms(value - base)})")
        rows.append([name, *cells])
    return "\n".join([
        "Each cell: the median start of `systemd-run --wait -p DIRECTIVE /bin/true`, and in "
        "brackets what the directive adds to the plain start. A running container adds "
        f"{result['per_container']:.1f} mount(s) to the host (median of 5).", "",
        table(header, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        emit(measure_inside(args.runs))
        return
    with sandbox_host() as host:
        result = inside(host, __file__, "--runs", args.runs, timeout=3600)
    print(f"Machine: {machine()}\n")
    print(report(result))


if __name__ == "__main__":
    sys.exit(main())
