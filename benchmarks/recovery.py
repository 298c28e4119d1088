"""Recovery after a crash or `docker kill`, where its time goes, the physical floor, and crash
loops (issue 6, items 1 and 5; issue 11's restart path).

    .venv/bin/python benchmarks/recovery.py [--kills 30]

Four setups run side by side on one sandbox host, 15 containers each, and the kills
rotate a, b, c, d, a, ... so that all of them see the same background noise:
  a. this project: `install --worker scheduler --replicas scheduler=15`, agent running;
  b. `docker run -d --restart=always` of the same stand-in image;
  c. a minimal hand-written template unit: `docker run --rm --name ...`, Restart=always,
     systemd's default RestartSec (100 ms) and start limit, no agent;
  d. this project's unit before issue 11 (RestartSec=100ms, `docker rm -f` clients in
     ExecStartPre= and ExecStopPost=), written out by hand, no agent: the restart path as
     it was, measured in the same run.
Each container is killed at most once per 15 s (longer than both Docker's 10 s backoff
reset and the 60 s / 5 start limit allow), so every kill is a single crash.
Recovery = the kill to the `start` event of the replacement container, timed by the
daemon (see common.Events for why events rather than polling); where the time goes comes
from docker's events and systemd's own journal entries about the unit (info level, the
same clock).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import time

from common import (
    IMAGE,
    INSTALLED_ENV,
    TOOL,
    Events,
    emit,
    install,
    log,
    machine,
    median,
    ms,
    p95,
    sandbox_host,
    secs,
    sh,
    table,
    verdict,
    wait_for,
    write_env,
)

PER_SETUP = 15
MIN_SPACING = 15.0  # seconds between two kills of one container
FLOOR_RUNS = 20
CRASH_WINDOW = 60.0  # seconds a crash loop is left running
RECOVERY_BOUND = 90.0  # how long a recovery is waited for before it counts as "never"

PLAIN_UNIT = f"""[Unit]
Description=hand-written worker %i
After=docker.service
Requires=docker.service

[Service]
ExecStart=/usr/bin/docker run --rm --name plain-%i --network host {IMAGE}
Restart=always
"""

# The unit's `docker rm -f` of its container, output dropped, as it was before issue 11.
PREVIOUS_RM = (r'-/bin/sh -c "exec \"$$0\" rm -f \"$$1\" >/dev/null 2>&1" '
               '/usr/bin/docker previous-%i')
PREVIOUS_LICENSE = (r'/bin/sh -c "export LICENSE=\"$${LICENSE:-$$API_LICENSE}\"; '
                    r'exec \"$$0\" \"$$@\""')
PREVIOUS_UNIT = f"""[Unit]
Description=this project's worker unit before issue 11, %i
After=docker.service
Requires=docker.service
StartLimitIntervalSec=60s
StartLimitBurst=5

[Service]
Type=exec
Environment="SAVE_LOGS=no"
EnvironmentFile={INSTALLED_ENV}
ExecStartPre={PREVIOUS_RM}
ExecStart={PREVIOUS_LICENSE} /usr/bin/docker run --rm --name previous-%i \\
    --init --log-driver none --network host -e LICENSE -e SAVE_LOGS {IMAGE}
ExecStop=/usr/bin/docker stop -t 10 previous-%i
ExecStopPost={PREVIOUS_RM}
SuccessExitStatus=143
Restart=always
RestartSec=100ms
"""

PLAIN_FAIL_UNIT = f"""[Unit]
Description=hand-written crash-looping worker
After=docker.service
Requires=docker.service

[Service]
EnvironmentFile=/root/plainfail.env
ExecStart=/usr/bin/docker run --rm --name plainfail --network host -e STANDIN_FAIL_SCHEDULER \
{IMAGE}
Restart=always
"""

DOCKER_FAIL = (
    "docker run -d --restart=always --init --network host --name dockerfail "
    f"-v /root/flag:/flag --entrypoint /bin/sh {IMAGE} "
    "-c '[ -e /flag/ok ] || exit 3; exec /standin.sh'"
)


# ---------------------------------------------------------------- inside the sandbox

def clock(argv: list[str]) -> float:
    """Wall seconds of one client process, started without a shell."""
    began = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - began


def floor(runs: int) -> dict:
    """The physical floor, and each piece of a restart alone on this docker: `docker run
    --rm` of the stand-in doing nothing (invocation -> `create` event is the client's own
    start, `create` -> `start` is dockerd's), `docker create` then `docker start`, one
    `docker rm -f` of no container, and the /bin/sh exec wrapper of the license."""
    events = Events()
    result: dict[str, list[float]] = collections.defaultdict(list)

    def at(action: str, name: str) -> float:
        return events.wait(lambda e: e.action == action and e.name == name, 10).time

    for _ in range(runs):
        began = time.time()
        result["wall"].append(clock(["docker", "run", "--rm", "--init", "--network", "host",
                                     "--name", "floor-run", IMAGE, "true"]))
        created, started = at("create", "floor-run"), at("start", "floor-run")
        result["to_create"].append(created - began)
        result["create_to_start"].append(started - created)
        result["to_start"].append(started - began)
        result["create"].append(clock(["docker", "create", "--init", "--network", "host",
                                       "--name", "floor-create", IMAGE, "true"]))
        began = time.time()
        clock(["docker", "start", "-a", "floor-create"])
        result["start"].append(at("start", "floor-create") - began)
        clock(["docker", "rm", "floor-create"])
        result["rm"].append(clock(["docker", "rm", "-f", "no-such-container"]))
        result["shell"].append(clock(["/bin/sh", "-c", 'exec "$0" "$@"', "/bin/true"])
                               - clock(["/bin/true"]))
    events.close()
    return result


def kills(method: str, total: int, bound: float, setups: dict[str, list[str]]) -> dict:
    """Kill each setup's containers in turn; seconds from the kill to the replacement's
    `start` event (None: not within `bound`), and the marks in between (see phases).

    method "docker": `docker kill NAME`, timed from docker's own `kill` event.
    method "crash": SIGKILL to the container's main process, as a crashing worker dies,
    timed from just before the kill(2).
    """
    events = Events()
    last_kill: dict[str, float] = {}
    results: dict[str, list[float | None]] = {name: [] for name in setups}
    for i in range(total * len(setups)):
        setup = list(setups)[i % len(setups)]
        names = setups[setup]
        name = names[(i // len(setups)) % len(names)]
        time.sleep(max(0.0, last_kill.get(name, 0) + MIN_SPACING - time.monotonic()))
        pid = int(sh(f"docker inspect -f '{{{{.State.Pid}}}}' {name}"))
        events.drain()
        last_kill[name] = time.monotonic()
        if method == "crash":
            killed_at: float | None = time.time()
            os.kill(pid, signal.SIGKILL)
        else:
            sh(f"docker kill {name}")
            killed = events.wait(lambda e, n=name: e.action == "kill" and e.name == n, 10)
            killed_at = killed.time if killed else None
        # Docker's restart policy starts the same container again: any start after the
        # kill is the replacement.
        seen: list = []

        def replaced(event, n=name, seen=seen) -> bool:
            seen.append(event)
            return event.action == "start" and event.name == n

        started = events.wait(replaced, bound)
        if killed_at and started:
            marks = {e.action: e.time for e in reversed(seen) if e.name == name}
            marks |= unit_marks(name, killed_at)
            results[setup].append({"total": started.time - killed_at,
                                   **phases(killed_at, marks)})
        else:
            results[setup].append(None)
        time.sleep(0.3)  # let the replacement settle before the next kill
    events.close()
    return results


# Marks of a recovery in time order: docker's events and systemd's journal entries.
MARKS = ("die", "destroy", "exited", "scheduled", "create", "start")
JOURNAL_MARKS = {"Main process exited": "exited", "Scheduled restart job": "scheduled"}


def unit_marks(container: str, after: float) -> dict[str, float]:
    """When systemd saw the unit's main process (the docker client) exit and when it
    scheduled the restart, from its journal entries about the unit; {} for a container
    that is no unit's (b: plain-3 belongs to plain@3.service, dockerrs-3 to none)."""
    base, _, instance = container.rpartition("-")
    out = sh(f"journalctl -o json -u {base}@{instance}.service --since @{int(after)}",
             check=False)
    marks: dict[str, float] = {}
    for line in out.splitlines():
        entry = json.loads(line)
        when, message = int(entry["__REALTIME_TIMESTAMP"]) / 1e6, entry.get("MESSAGE")
        for text, mark in JOURNAL_MARKS.items():
            if when >= after and isinstance(message, str) and text in message:
                marks.setdefault(mark, when)
    return marks


def phases(killed_at: float, marks: dict[str, float]) -> dict[str, float]:
    """Seconds from each mark present to the previous one (the kill first): kill -> die
    (exit noticed), -> destroy (--rm removal), -> exited (the client saw it and left),
    -> scheduled (ExecStopPost=, RestartSec=), -> create (ExecStartPre=, the shell, the
    docker client's start), -> start (dockerd starts it)."""
    result, previous = {}, killed_at
    for mark in MARKS:
        if mark in marks:
            result[mark] = marks[mark] - previous
            previous = marks[mark]
    return result


def gave_up(unit: str) -> bool:
    log = sh(f"journalctl -q -u {unit} -o cat", check=False)
    return "Start request repeated too quickly" in log


def recovered_at(events: list, name: str, after: float) -> float | None:
    """When `name` first started after `after` and then did not die (a restart policy
    starts the same container id again, so a death counts only after the start)."""
    for start in sorted((e for e in events if e.action == "start" and e.name == name
                         and e.time > after), key=lambda e: e.time):
        if not any(e.action == "die" and e.id == start.id and e.time > start.time
                   for e in events):
            return start.time
    return None


def crashloop(window: float, bound: float) -> dict:
    """Crash loops started together; causes removed when systemd gives up, or at `window`."""
    events = Events()
    began = time.time()
    sh("systemctl start tracardi.target plainfail.service")
    sh(DOCKER_FAIL)
    fixes = {
        "tracardi-scheduler": f"sed -i 's/^STANDIN_FAIL_SCHEDULER=1/STANDIN_FAIL_SCHEDULER=0/' "
                              f"{INSTALLED_ENV}",
        "plainfail": "sed -i 's/=1/=0/' /root/plainfail.env",
    }
    fixed: dict[str, float] = {}
    while time.time() < began + window:
        for name, fix in fixes.items():
            if name not in fixed and gave_up(f"{name}.service"):
                sh(fix)
                fixed[name] = time.time()
        time.sleep(0.2)
    starts_in_window = {}
    seen = events.drain()
    for name in ("tracardi-trigger", "dockerfail", "plainfail", "tracardi-scheduler"):
        starts_in_window[name] = sum(1 for e in seen if e.action == "start" and e.name == name
                                     and e.time <= began + window)
    sh(f"sed -i 's/^STANDIN_FAIL_TRIGGER=1/STANDIN_FAIL_TRIGGER=0/' {INSTALLED_ENV}")
    sh("touch /root/flag/ok")
    fixed["tracardi-trigger"] = fixed["dockerfail"] = time.time()

    def all_back() -> bool:
        got = seen + events.drain()
        seen[:] = got
        return all(recovered_at(got, n, t) or time.time() > t + bound
                   for n, t in fixed.items())

    wait_for(all_back, bound, step=1.0)
    events.close()
    recovery = {}
    for name, at in fixed.items():
        back = recovered_at(seen, name, at)
        recovery[name] = None if back is None else back - at
    return {"starts": starts_in_window, "recovery": recovery,
            "gave_up_after": {n: fixed[n] - began for n in fixes if n in fixed}}


def run_inside(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "floor":
        emit(floor(int(argv[1])))
    elif mode == "kills":
        setups = dict(item.split("=", 1) for item in argv[4:])
        emit(kills(argv[1], int(argv[2]), float(argv[3]),
                   {k: v.split(",") for k, v in setups.items()}))
    elif mode == "crashloop":
        emit(crashloop(float(argv[1]), float(argv[2])))


# ---------------------------------------------------------------- outside

def measure(kill_count: int) -> dict:
    from common import inside

    with sandbox_host() as host:
        log("sandbox up; floor")
        result = {"floor": inside(host, __file__, "floor", FLOOR_RUNS)}
        log(f"setting up 4 x {PER_SETUP} containers")
        install(host, f"--worker scheduler --replicas scheduler={PER_SETUP}")
        host.run("systemctl start tracardi.target")
        names = range(1, PER_SETUP + 1)
        for template, text in (("plain", PLAIN_UNIT), ("previous", PREVIOUS_UNIT)):
            host.run(f"cat > /etc/systemd/system/{template}@.service <<'EOF'\n{text}EOF\n"
                     "systemctl daemon-reload && systemctl start "
                     + " ".join(f"{template}@{i}" for i in names))
        for i in names:
            host.run(f"docker run -d --restart=always --init --network host "
                     f"--name dockerrs-{i} {IMAGE} >/dev/null")
        setups = {key: ",".join(f"{prefix}-{i}" for i in names) for key, prefix in
                  (("a", "tracardi-scheduler"), ("b", "dockerrs"), ("c", "plain"),
                   ("d", "previous"))}
        host.wait_until("[ $(docker ps -q --filter status=running | wc -l) -ge "
                        f"{len(setups) * PER_SETUP} ]", timeout=120)
        time.sleep(3)
        log("kills")
        result["crash_kills"] = inside(host, __file__, "kills", "crash", kill_count, 30,
                                       *(f"{k}={v}" for k, v in setups.items()))
        log("docker kills")
        result["docker_kills"] = inside(host, __file__, "kills", "docker", kill_count, 30,
                                        *(f"{k}={v}" for k, v in setups.items() if k != "b"))
        # Docker does not restart a container stopped with `docker kill`: wait 10 s once.
        result["docker_kills"] |= inside(host, __file__, "kills", "docker", 1, 10,
                                         f"b={setups['b']}")
        host.run("systemctl stop tracardi.target 'plain@*' 'previous@*'; "
                 "docker rm -f $(docker ps -aq) >/dev/null; "
                 f"{TOOL} uninstall --purge >/dev/null", check=False, timeout=300)

        log("crash loops")
        write_env(host, STANDIN_FAIL_SCHEDULER="1", STANDIN_FAIL_TRIGGER="1")
        install(host)
        host.run("mkdir -p /root/flag && echo STANDIN_FAIL_SCHEDULER=1 > /root/plainfail.env "
                 f"&& cat > /etc/systemd/system/plainfail.service <<'EOF'\n{PLAIN_FAIL_UNIT}EOF\n"
                 "systemctl daemon-reload")
        result["crash"] = inside(host, __file__, "crashloop", CRASH_WINDOW, RECOVERY_BOUND)
        log("shutting down")
    log("done")
    return result


def totals(kills: list[dict | None]) -> list[float]:
    return [k["total"] for k in kills if k]


LABELS = {
    "a": "a. tracardi-systemd unit + agent",
    "b": "b. `docker run -d --restart=always`",
    "c": "c. hand-written unit, no agent",
    "d": "d. this project's unit before issue 11, no agent",
}
FLOOR_PIECES = {
    "to_start": "floor: `docker run --rm --init --network host IMAGE true`, invocation to "
                "container started",
    "wall": "the same, whole run incl. exit and removal",
    "to_create": "`docker run`: invocation to `create` event (the client's own start)",
    "create_to_start": "`docker run`: `create` to `start` event (dockerd: attach, start)",
    "create": "`docker create` (whole client run)",
    "start": "`docker start -a` of that container: invocation to `start` event",
    "rm": "`docker rm -f` of no container (whole client run)",
    "shell": "`/bin/sh -c 'exec \"$0\" \"$@\"'` in front of a program (the license wrapper)",
}


def report(result: dict) -> str:
    floor = result["floor"]
    floor_start = median(floor["to_start"])
    methods = {"crash_kills": "SIGKILL of its main process", "docker_kills": "`docker kill`"}
    docker_median = median(totals(result["crash_kills"]["b"]))
    rows = []
    for method, how in methods.items():
        for key, label in LABELS.items():
            values = totals(result[method][key])
            lost = len(result[method][key]) - len(values)
            count = f"{len(values)}" + (f" + {lost} never back" if lost else "")
            if not values:
                rows.append([label, how, count, "never", "-", "-", "-"])
                continue
            mid = median(values)
            rows.append([label, how, count, ms(mid), ms(p95(values)),
                         f"{mid / docker_median:.2f}", f"{(mid - floor_start) * 1000:+.0f} ms"])
    a_mid = median(totals(result["crash_kills"]["a"]))
    d_mid = median(totals(result["crash_kills"]["d"]))
    ok_ratio = a_mid / docker_median <= 1.0
    ok_floor = a_mid - floor_start <= 0.5
    out = ["### Recovery after a single crash (kill to replacement container started)", "",
           table(["setup", "killed by", "kills", "median", "p95", "median / b's (crash)",
                  "median - floor"], rows), "",
           f"Target, median ratio a/b <= 1.0 (crash): {a_mid / docker_median:.2f} (before "
           f"issue 11, d/b: {d_mid / docker_median:.2f}), {verdict(ok_ratio)}. Target, within "
           f"0.5 s of the floor: {(a_mid - floor_start) * 1000:+.0f} ms, {verdict(ok_floor)}. "
           "Docker did not restart a container stopped with `docker kill` (not within 10 s: "
           "moby treats a SIGKILL sent through its API as a stop on purpose), so b is compared "
           "on a crash of the process.", ""]

    phase_rows = []
    for key, label in LABELS.items():
        kills = [k for k in result["crash_kills"][key] if k]
        phase_rows.append([label, *(ms(median([k[m] for k in kills if m in k]))
                                    if any(m in k for k in kills) else "-" for m in MARKS),
                           ms(median(totals(kills)))])
    out += ["### Where the time goes (crash)", "",
            "Median time from the previous mark to each: docker's `die` (exit noticed) and "
            "`destroy` (`--rm` removal done) events; systemd's journal entries \"Main process "
            "exited\" (the docker client left) and \"Scheduled restart job\" (after "
            "ExecStopPost= and RestartSec=); docker's `create` (after ExecStartPre=, the shell "
            "and the docker client's start) and `start` events. b restarts the same container "
            "inside dockerd (100 ms backoff first), so it has only `die` and `start`.", "",
            table(["setup", "kill -> die", "-> destroy", "-> client exited",
                   "-> restart scheduled", "-> create", "-> start", "total (median)"],
                  phase_rows), ""]

    out += [f"### The pieces alone on this docker (median of {len(floor['wall'])})", "",
            table(["piece", "median", "p95"],
                  [[text, ms(median(floor[key])), ms(p95(floor[key]))]
                   for key, text in FLOOR_PIECES.items()]), ""]

    crash = result["crash"]
    rec, starts = crash["recovery"], crash["starts"]
    gave = crash["gave_up_after"]
    out += ["### Crash loop (the container exits with status 3 at once)", "",
            f"All loops start together; starts counted over the first {CRASH_WINDOW:.0f} s; "
            f"then the cause is removed and the recovery waited for up to "
            f"{RECOVERY_BOUND:.0f} s (\"never\" = not within that).", "",
            table(["setup", f"container starts in {CRASH_WINDOW:.0f} s",
                   "systemd gave up", "recovered after cause removed"],
                  [["tracardi-systemd + agent (tracardi-trigger)", starts["tracardi-trigger"],
                    "yes, agent re-arms with backoff", secs(rec["tracardi-trigger"])],
                   ["`docker run -d --restart=always`", starts["dockerfail"],
                    "never gives up (backoff doubles to 60 s)", secs(rec["dockerfail"])],
                   ["hand-written unit, no agent", starts["plainfail"],
                    f"yes, after {gave.get('plainfail', 0):.1f} s", secs(rec.get("plainfail"))]]),
            "",
            "### Recovery of a worker that exhausted systemd's start limit", "",
            "The cause is removed as soon as systemd gives up (\"Start request repeated too "
            "quickly\"); time from then to the container running.", "",
            table(["setup", "gave up after", "recovered after cause removed"],
                  [["tracardi-systemd + agent (tracardi-scheduler)",
                    f"{gave.get('tracardi-scheduler', 0):.1f} s",
                    secs(rec.get("tracardi-scheduler"))],
                   ["hand-written unit, no agent (plainfail)",
                    f"{gave.get('plainfail', 0):.1f} s", secs(rec.get("plainfail"))]]), "",
            "Target, a persistent crash loop costs a few restarts a minute and recovers on its "
            f"own: {starts['tracardi-trigger']} starts in the first minute (5 per re-arm; "
            "re-arms back off 10 s doubling to 300 s, so 1 start a minute at the cap), "
            f"recovered: {secs(rec['tracardi-trigger'])}, "
            f"{verdict(rec['tracardi-trigger'] is not None)}."]
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        run_inside(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    result = measure(args.kills)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    print(f"Machine: {machine()}\n")
    print(report(result))


if __name__ == "__main__":
    main()
