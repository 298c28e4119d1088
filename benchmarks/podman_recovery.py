"""SIGKILL recovery and per-unit memory on a Podman host (issue 25): this project's Quadlet
units beside Podman's own restart policy and this project's Docker units, in one run.

    .venv/bin/python benchmarks/podman_recovery.py [--kills 20] [--per-setup 3]

There is no Podman with Quadlet on Debian 12 (its podman 4.3 has none), so this runs in a
Debian 13 guest of the e2e VM tier (tests/e2e/vm.py: podman 5.4.2, conmon, catatonit and
dockerd 26.1 side by side, qemu under TCG: absolute times are 6-10x a native host's, the
ratios of one run are what count). Four setups on the one guest, `--per-setup` containers
each, all of the same stand-in worker image:
  a. this project's Quadlet units: `tracardi-systemd install --runtime podman`, the image
     loaded into Podman's store under its fully qualified docker.io/tracardi/... name;
  b. `podman run -d --restart=always --init --network host` of that image (Podman's own
     restart, done by the `podman container cleanup` conmon runs when the container exits);
  c. this project's Docker units (`install --runtime docker`, on the guest's dockerd). One
     host holds one install (one manifest, one tracardi.target), so these are rendered with
     `install --root` for another worker (trigger) and their unit file copied beside the
     Quadlet install; their instances are started by name;
  d. `docker run -d --restart=always`, a reference: c/d here against the sandbox's
     recovery.py (the same units against the same restart policy, natively) shows how far
     emulation moves a restart path made of process starts.
No agent takes part: none is installed with the Quadlet units at this commit (one that is
active is stopped first), and c's units run without it. A single crash is systemd's
`Restart=always` (a, c) or the engine's restart policy (b, d) alone.
Kills rotate a, b, c, d, a, ... so that the setups share the noise; each container is killed at
most once per 15 s (the units' start limit is 5 in 60 s). A kill is SIGKILL of the
container's init (State.Pid: catatonit, docker-init) from the host, timed from just before
kill(2) to the replacement's `start` event, stamped by Podman (podman events) or dockerd
(docker events) on the guest's clock (see common.Events).
Memory: what stays resident per unit beside the container: the Quadlet unit's MainPID
(conmon) and the Docker unit's MainPID (the foreground `docker run` client), RSS and PSS from
/proc/PID/smaps_rollup, medians over the units; and, for reference, the per-container
processes outside any unit (containerd-shim for c, conmon for b).
Listing: the agent's call of every tick, the managed containers, `--calls` times each way:
through Podman's API as the agent makes it (engine.py's libpod list on podman.socket, the
service resident) and through the CLI (`podman ps -a --filter label=... --format json`, a
podman process per call); the CPU of the caller (this process, or the CLI's children) and,
for the API, of podman.service (its cgroup's cpu.stat), per call. An events stream is held
open meanwhile, as the agent's is, so the service stays resident; the CLI uses no service.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from common import (
    CHECKOUT,
    ENV_SOURCE,
    IMAGE,
    Events,
    emit,
    inside,
    log,
    machine,
    median,
    memory_kib,
    ms,
    percentile,
    podman_events,
    print_result,
    sh,
    table,
    wait_for,
    write_env,
)

from tests.e2e.guest import Guest
from tests.e2e.operator import install, tool
from tests.e2e.vm import prepare, provisioned_guest

RELEASE = "trixie"
KILLS = 20  # per setup
CALLS = 100  # listings per way
MANAGED = "tracardi.managed=true"
PODMAN_SERVICE_CPU = Path("/sys/fs/cgroup/system.slice/podman.service/cpu.stat")
PER_SETUP = 3
MIN_SPACING = 15.0  # seconds between two kills of one container
BOUND = 60.0  # seconds a replacement is waited for before the kill counts as "never back"
PODMAN_IMAGE = f"docker.io/{IMAGE}"
DOCKER_WORKER = "trigger"  # c's units: another worker than a's, so no unit name is shared
DOCKER_UNITS_ROOT = "/root/docker-units"
SETUPS = {  # key: (engine, container name prefix, label)
    "a": ("podman", "tracardi-scheduler", "a. this project's Quadlet units "
                                          "(`install --runtime podman`)"),
    "b": ("podman", "podman-rs", "b. `podman run -d --restart=always`"),
    "c": ("docker", f"tracardi-{DOCKER_WORKER}", "c. this project's Docker units "
                                                 "(`install --runtime docker`)"),
    # A reference: how far emulation moves c against the sandbox's recovery.py (c/d there).
    "d": ("docker", "docker-rs", "d. `docker run -d --restart=always`"),
}
VERSIONS = """
echo "kernel: $(uname -r)"
echo "podman: $(podman version --format '{{.Client.Version}}')"
echo "conmon: $(conmon --version | head -n 1 | sed 's/^conmon version //')"
echo "crun: $(crun --version | head -n 1 | sed 's/^crun version //')"
echo "docker: $(docker version --format '{{.Server.Version}}')"
echo "systemd: $(systemctl --version | head -n 1 | cut -d' ' -f2)"
"""


# ---------------------------------------------------------------- inside the guest

def pid_of(engine: str, name: str) -> int:
    """The container's init in the host's pid namespace; 0 while it is not running."""
    out = sh(f"{engine} inspect -f '{{{{.State.Pid}}}}' {name} 2>/dev/null", check=False)
    return int(out.strip() or 0)


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def kills(total: int, setups: dict[str, tuple[str, list[str]]]) -> dict:
    """SIGKILL each setup's containers in turn: seconds from just before the kill to the
    replacement's `start` event ("total"; None when not back within BOUND) and to the
    first event of each action of that name in between ("marks": podman's `died`,
    `remove`, `create`, `init`; docker's `die`, `destroy`, `create`; ...)."""
    streams = {"docker": Events(), "podman": Events(podman_events())}
    last_kill: dict[str, float] = {}
    results: dict[str, list[dict | None]] = {key: [] for key in setups}
    for i in range(total * len(setups)):
        key = list(setups)[i % len(setups)]
        engine, names = setups[key]
        name = names[(i // len(setups)) % len(names)]
        time.sleep(max(0.0, last_kill.get(name, 0) + MIN_SPACING - time.monotonic()))
        if not wait_for(lambda e=engine, n=name: pid_of(e, n) > 0, BOUND):
            results[key].append(None)
            continue
        events = streams[engine]
        pid = pid_of(engine, name)
        events.drain()
        last_kill[name] = time.monotonic()
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        seen: list = []

        def replaced(event, n=name, seen=seen) -> bool:
            seen.append(event)
            return event.action == "start" and event.name == n

        started = events.wait(replaced, BOUND)
        marks = {e.action: e.time - killed_at for e in reversed(seen) if e.name == name}
        results[key].append(None if started is None else {"total": started.time - killed_at,
                                                           "marks": marks})
        time.sleep(0.3)  # let the replacement settle before the next kill
    for events in streams.values():
        events.close()
    return results


def memory(units: dict[str, list[str]], containers: dict[str, tuple[str, list[str]]]) -> dict:
    """RSS and PSS (KiB) of each unit's MainPID, and of the parent of each container's init
    (conmon, containerd-shim), with the process's name."""
    def look(pid: int) -> dict:
        return {"comm": Path(f"/proc/{pid}/comm").read_text().strip(), **memory_kib(pid)}

    result: dict[str, list[dict]] = {}
    for key, names in units.items():
        result[f"main-{key}"] = [
            look(int(sh(f"systemctl show -p MainPID --value {unit}"))) for unit in names]
    for key, (engine, names) in containers.items():
        result[f"monitor-{key}"] = [look(parent(pid_of(engine, name))) for name in names]
    return result


def service_cpu() -> float:
    """CPU seconds podman.service has used (0 while it is not running)."""
    try:
        stat = PODMAN_SERVICE_CPU.read_text()
    except OSError:
        return 0.0
    return next(int(line.split()[1]) for line in stat.splitlines()
                if line.startswith("usage_usec ")) / 1e6


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def listing(calls: int) -> dict:
    """Per way: the wall median, and CPU seconds per call of the caller and of
    podman.service (the API's only: the CLI's calls do not use it)."""
    from tracardi_systemd.host.engine import PODMAN_SOCKET, Engine  # the deb's, in the guest

    engine = Engine(PODMAN_SOCKET)
    stream = engine.events(label=MANAGED)  # the agent's: podman.service stays resident
    listed = len(engine.containers(MANAGED))

    def api() -> None:
        engine.containers(MANAGED)

    def cli() -> None:
        subprocess.run(["podman", "ps", "-a", "--filter", f"label={MANAGED}",
                        "--format", "json"], capture_output=True, check=True)

    result: dict = {"containers": listed}
    for way, call, own_cpu in (("api", api, time.process_time), ("cli", cli, children_cpu)):
        walls = []
        cpu, service = own_cpu(), service_cpu()
        for _ in range(calls):
            started = time.perf_counter()
            call()
            walls.append(time.perf_counter() - started)
        used = (service_cpu() - service) / calls if way == "api" else 0.0
        result[way] = {"wall": median(walls), "caller": (own_cpu() - cpu) / calls,
                       "service": used}
    stream.close()
    return result


def run_inside(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    if argv[0] == "listing":
        emit(listing(spec["calls"]))
    elif argv[0] == "kills":
        emit(kills(spec["total"], {k: (e, n) for k, (e, n) in spec["setups"].items()}))
    elif argv[0] == "memory":
        emit(memory(spec["units"], {k: (e, n) for k, (e, n) in spec["containers"].items()}))


# ---------------------------------------------------------------- outside

def load_into_podman(guest: Guest, image: str) -> None:
    """The stand-in image of the guest's dockerd in Podman's store under its fully
    qualified name (`podman load` of a `docker save` may name it localhost/...)."""
    out = guest.run(f"docker save {image} | podman load", timeout=300).stdout
    loaded = out.strip().splitlines()[-1].removeprefix("Loaded image: ").strip()
    if loaded != f"docker.io/{image}":
        guest.run(f"podman tag {loaded} docker.io/{image} && podman untag {loaded} {loaded}")


def copy_benchmarks(guest: Guest) -> None:
    """benchmarks/ and tests/e2e/ (what common.py imports) at the checkout's own path in
    the guest, so that common.inside runs this script there as it does in a sandbox."""
    with tempfile.NamedTemporaryFile(suffix=".tar") as archive:
        with tarfile.open(archive.name, "w") as tar:
            for path in [*CHECKOUT.glob("benchmarks/*.py"), *CHECKOUT.glob("tests/e2e/*.py")]:
                tar.add(path, arcname=str(path.relative_to(CHECKOUT)))
        guest.put(Path(archive.name), "/root/benchmarks.tar")
    guest.run(f"mkdir -p {CHECKOUT} && tar -C {CHECKOUT} -xf /root/benchmarks.tar")


def set_up(guest: Guest, per_setup: int) -> dict[str, list[str]]:
    """The three setups running; their containers by setup."""
    numbers = range(1, per_setup + 1)
    load_into_podman(guest, IMAGE)
    write_env(guest)
    install(guest, f"--runtime podman --worker scheduler --replicas scheduler={per_setup} "
                   "--start")
    tool(guest, f"install --root {DOCKER_UNITS_ROOT} --env-file {ENV_SOURCE} --network host "
                f"--runtime docker --worker {DOCKER_WORKER} "
                f"--replicas {DOCKER_WORKER}={per_setup}")
    template = f"tracardi-{DOCKER_WORKER}@.service"
    guest.run(f"cp {DOCKER_UNITS_ROOT}/etc/systemd/system/{template} /etc/systemd/system/ && "
              "systemctl daemon-reload && systemctl start "
              + " ".join(f"tracardi-{DOCKER_WORKER}@{i}.service" for i in numbers),
              timeout=300)
    for key, image in (("b", PODMAN_IMAGE), ("d", IMAGE)):
        engine, prefix, _ = SETUPS[key]
        for i in numbers:
            guest.run(f"{engine} run -d --restart=always --init --network host "
                      f"--name {prefix}-{i} {image} >/dev/null", timeout=120)
    containers = {key: [f"{prefix}-{i}" for i in numbers]
                  for key, (_, prefix, _) in SETUPS.items()}
    for key, names in containers.items():
        engine = SETUPS[key][0]
        for name in names:
            guest.wait_until(f"[ \"$({engine} inspect -f '{{{{.State.Running}}}}' {name})\" "
                             "= true ]", timeout=120)
    return containers


def stop_agent(guest: Guest) -> str:
    """What the agent was: none takes part in these recoveries."""
    state = guest.run("systemctl is-active tracardi-agent.service", check=False).stdout.strip()
    if state == "active":
        guest.run("systemctl stop tracardi-agent.service")
    return state


def measure(kill_count: int, per_setup: int, calls: int) -> dict:
    image, deb = prepare(RELEASE)
    with provisioned_guest(RELEASE, image, deb) as guest:
        log("guest up; the three setups")
        containers = set_up(guest, per_setup)
        result: dict = {"agent": stop_agent(guest), "per_setup": per_setup,
                        "guest": guest.run(VERSIONS).stdout.strip().splitlines(),
                        "guest_size": f"{guest.cpus} vCPUs, {guest.memory_mib} MiB"}
        copy_benchmarks(guest)
        time.sleep(10)  # the starts settle
        numbers = range(1, per_setup + 1)
        units = {"a": [f"tracardi-scheduler@{i}.service" for i in numbers],
                 "c": [f"tracardi-{DOCKER_WORKER}@{i}.service" for i in numbers]}
        log("memory")
        result["memory"] = inside(guest, __file__, "memory", json.dumps(
            {"units": units, "containers": {k: (SETUPS[k][0], containers[k])
                                            for k in ("b", "c")}}), python=guest.python)
        log(f"listing: {calls} calls each way")
        result["listing"] = inside(guest, __file__, "listing", json.dumps({"calls": calls}),
                                   python=guest.python)
        log(f"kills: {kill_count} per setup")
        result["load_before"] = os.getloadavg()
        result["kills"] = inside(guest, __file__, "kills", json.dumps(
            {"total": kill_count, "setups": {k: (SETUPS[k][0], names)
                                             for k, names in containers.items()}}),
            timeout=1800, python=guest.python)
        result["load_after"] = os.getloadavg()
        log("shutting down")
    log("done")
    return result


# ---------------------------------------------------------------- tables

def totals(kills: list[dict | None]) -> list[float]:
    return [k["total"] for k in kills if k]


def load(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def host_memory() -> str:
    kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    return f"{kib / 2**20:.1f} GiB memory"


def steps(kills: list[dict | None]) -> str:
    done = [k["marks"] for k in kills if k]
    actions = {action for marks in done for action in marks}
    times = {action: median([m[action] for m in done if action in m]) for action in actions}
    return ", ".join(f"{action} {ms(at)}" for action, at in sorted(times.items(),
                                                                  key=lambda item: item[1]))


def report(result: dict) -> str:
    medians = {key: median(totals(kills)) for key, kills in result["kills"].items()
               if totals(kills)}
    rows = []
    for key, (_, _, label) in SETUPS.items():
        kills = result["kills"][key]
        values = totals(kills)
        lost = len(kills) - len(values)
        count = f"{len(values)}" + (f" + {lost} never back" if lost else "")
        if not values:
            rows.append([label, count, "never", "-", "-", "-"])
            continue
        mid = medians[key]
        rows.append([label, count, ms(mid), ms(percentile(values, 90)),
                     f"{mid / medians['b']:.2f}" if "b" in medians else "-",
                     f"{mid / medians['c']:.2f}" if "c" in medians else "-"])
    guest = "; ".join(result["guest"])
    agent = ("none installed with the Quadlet units" if result["agent"] != "active"
             else "one was active and was stopped first")
    ratios = (f"a/b {medians['a'] / medians['b']:.2f}, a/c {medians['a'] / medians['c']:.2f}; "
              f"c/d {medians['c'] / medians['d']:.2f} (on the sandbox's native dockerd, "
              "recovery.py's a/b above, the same units against the same restart policy)"
              if set(SETUPS) <= set(medians) else "not every setup recovered")
    out = ["### SIGKILL recovery on one Podman host (kill of the container's init to the "
           "replacement's `start` event)", "",
           f"- Host: {machine()}, {host_memory()}; load average (1, 5, 15 min) "
           f"{load(result['load_before'])} before the kills, {load(result['load_after'])} "
           "after.",
           f"- Guest: Debian 13 under qemu TCG, {result['guest_size']}; {guest}. Absolute "
           "times are 6-10x a native host's: compare the ratios.",
           f"- {result['per_setup']} containers per setup, kills rotating "
           f"{', '.join(SETUPS)}; no agent ({agent}).", "",
           table(["setup", "kills", "median", "p90", "median / b's", "median / c's"], rows),
           "", f"Median ratios: {ratios}.", "",
           "### Where the time goes (median time from the kill to the first event of each "
           "kind, in order)", "",
           table(["setup", "events of the container's name, kill to replacement started"],
                 [[label, steps(result["kills"][key])] for key, (_, _, label) in SETUPS.items()]),
           ""]

    memory = result["memory"]
    what = [("main-a", "a. Quadlet unit's MainPID"),
            ("main-c", "c. Docker unit's MainPID"),
            ("monitor-c", "c. beside it, outside the unit: the container's shim"),
            ("monitor-b", "b. `podman run -d --restart=always`: the container's monitor")]
    mem_rows = []
    for key, label in what:
        procs = memory[key]
        names = ", ".join(sorted({p["comm"] for p in procs}))
        mem_rows.append([label, names, len(procs),
                         f"{median([p['rss'] for p in procs]) / 1024:.1f} MiB",
                         f"{median([p['pss'] for p in procs]) / 1024:.1f} MiB"])
    conmon, client = memory["main-a"], memory["main-c"]

    def ratio(field: str) -> str:
        return (f"{median([p[field] for p in conmon]) / median([p[field] for p in client]):.3f}")

    out += ["### What stays resident per worker unit (RSS and PSS of /proc/PID/smaps_rollup, "
            "median over the units)", "",
            table(["process", "is", "n", "RSS", "PSS"], mem_rows), "",
            f"conmon / the `docker run` client: RSS {ratio('rss')}, PSS {ratio('pss')}. PSS "
            "divides the pages shared by processes of the same binary, so it falls as units "
            f"are added ({result['per_setup']} per setup here); RSS does not.", ""]
    return "\n".join(out + listing_report(result["listing"]))


def listing_report(listing: dict) -> list[str]:
    def total(way: str) -> float:
        return listing[way]["caller"] + listing[way]["service"]

    def tenths(seconds: float) -> str:
        return f"{seconds * 1000:.1f} ms"

    rows = [[label, tenths(listing[way]["wall"]), tenths(listing[way]["caller"]),
             tenths(listing[way]["service"]) if way == "api" else "not used",
             tenths(total(way))]
            for way, label in (("api", "Podman's API (the agent's way)"),
                               ("cli", "`podman ps --format json`"))]
    return ["### Listing the managed containers, the agent's call every tick (per call, "
            f"{listing['containers']} containers listed)", "",
            table(["way", "wall median", "CPU: caller", "CPU: podman.service", "CPU: both"],
                  rows), "",
            f"CPU per call, the CLI's over the API's: {total('cli') / total('api'):.1f}x; "
            f"wall {listing['cli']['wall'] / listing['api']['wall']:.1f}x."]


def main() -> None:
    if sys.argv[1:2] == ["--inside"]:
        run_inside(sys.argv[2:])
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--kills", type=int, default=KILLS, help="kills per setup")
        parser.add_argument("--per-setup", type=int, default=PER_SETUP,
                            help="containers per setup")
        parser.add_argument("--calls", type=int, default=CALLS,
                            help="listings of the managed containers per way")
        parser.add_argument("--json", help="also write the raw figures here")
        args = parser.parse_args()
        print_result(measure(args.kills, args.per_setup, args.calls), report, args.json)


if __name__ == "__main__":
    main()
