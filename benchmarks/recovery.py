"""Recovery after `docker kill`, the physical floor, and crash loops (issue 6, items 1 and 5).

    .venv/bin/python benchmarks/recovery.py [--kills 30]

Three setups run side by side on one sandbox host, 15 containers each, and the kills
rotate a, b, c, a, b, c, ... so that all three see the same background noise:
  a. this project: `install --worker scheduler --replicas scheduler=15`, agent running;
  b. `docker run -d --restart=always` of the same stand-in image;
  c. a minimal hand-written template unit: `docker run --rm --name ...`, Restart=always,
     systemd's default RestartSec (100 ms) and start limit, no agent.
Each container is killed at most once per 15 s (longer than both Docker's 10 s backoff
reset and the 60 s / 5 start limit allow), so every kill is a single crash.
Recovery = docker's `kill` event to the `start` event of the replacement container, both
timed by the daemon (see common.Events for why events rather than polling).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from common import (
    IMAGE,
    INSTALLED_ENV,
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

def floor(runs: int) -> dict:
    """`docker run --rm` of the stand-in doing nothing: wall time, and time to `start`."""
    events = Events()
    wall, to_start = [], []
    for _ in range(runs):
        began = time.time()
        sh(f"docker run --rm --network host {IMAGE} true")
        wall.append(time.time() - began)
        started = events.wait(lambda e: e.action == "start", timeout=10)
        to_start.append(started.time - began)
    events.close()
    # One more docker client call, as each ExecStartPre/ExecStopPost `docker rm -f` is.
    rm = []
    for _ in range(runs):
        began = time.time()
        sh("docker rm -f no-such-container", check=False)
        rm.append(time.time() - began)
    return {"wall": wall, "to_start": to_start, "rm": rm}


def kills(method: str, total: int, bound: float, setups: dict[str, list[str]]) -> dict:
    """Kill each setup's containers in turn; seconds from the kill to the replacement's
    `start` event (None: not within `bound`).

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
            results[setup].append({"total": started.time - killed_at, **phases(
                killed_at, [e for e in seen if e.name == name])})
        else:
            results[setup].append(None)
        time.sleep(0.3)  # let the replacement settle before the next kill
    events.close()
    return results


def phases(killed_at: float, events: list) -> dict[str, float]:
    """Where a recovery's time went, from docker's events of the container's name:
    kill -> die (exit noticed), die -> destroy (--rm removal), then -> create (the
    supervisor's turn: client exit, systemd, RestartSec, ExecStartPre), create -> start."""
    at = {e.action: e.time for e in reversed(events)}  # the first of each kind
    marks = [("die", at.get("die")), ("destroy", at.get("destroy")),
             ("create", at.get("create")), ("start", at.get("start"))]
    result, previous = {}, killed_at
    for action, when in marks:
        if when is not None:
            result[action] = when - previous
            previous = when
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
        log("setting up 3 x 15 containers")

        install(host, f"--worker scheduler --replicas scheduler={PER_SETUP}")
        host.run("systemctl start tracardi.target")
        host.run(f"cat > /etc/systemd/system/plain@.service <<'EOF'\n{PLAIN_UNIT}EOF\n"
                 "systemctl daemon-reload && systemctl start "
                 + " ".join(f"plain@{i}" for i in range(1, PER_SETUP + 1)))
        for i in range(1, PER_SETUP + 1):
            host.run(f"docker run -d --restart=always --init --network host "
                     f"--name dockerrs-{i} {IMAGE} >/dev/null")
        names = range(1, PER_SETUP + 1)
        setups = {
            "a": ",".join(f"tracardi-scheduler-{i}" for i in names),
            "b": ",".join(f"dockerrs-{i}" for i in names),
            "c": ",".join(f"plain-{i}" for i in names),
        }
        host.wait_until("[ $(docker ps -q --filter status=running | wc -l) -ge "
                        f"{3 * PER_SETUP} ]", timeout=120)
        time.sleep(3)
        log("kills")
        result["crash_kills"] = inside(host, __file__, "kills", "crash", kill_count, 30,
                                       *(f"{k}={v}" for k, v in setups.items()))
        log("docker kills")
        result["docker_kills"] = inside(host, __file__, "kills", "docker", kill_count, 30,
                                        f"a={setups['a']}", f"c={setups['c']}")
        # Docker does not restart a container stopped with `docker kill`: wait 10 s once.
        result["docker_kills"] |= inside(host, __file__, "kills", "docker", 1, 10,
                                         f"b={setups['b']}")
        host.run("systemctl stop tracardi.target 'plain@*'; "
                 "docker rm -f $(docker ps -aq) >/dev/null; "
                 "/work/main/.venv/bin/tracardi-systemd uninstall --purge >/dev/null",
                 check=False, timeout=300)

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


def report(result: dict) -> str:
    floor_start = median(result["floor"]["to_start"])
    labels = {
        "a": "a. tracardi-systemd unit + agent",
        "b": "b. `docker run -d --restart=always`",
        "c": "c. hand-written unit, no agent",
    }
    methods = {"crash_kills": "SIGKILL of its main process", "docker_kills": "`docker kill`"}
    docker_median = median(totals(result["crash_kills"]["b"]))
    rows = []
    for method, how in methods.items():
        for key, label in labels.items():
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
    ok_ratio = a_mid / docker_median <= 1.0
    ok_floor = a_mid - floor_start <= 0.5
    out = ["### Recovery after a single crash (kill to replacement container started)", "",
           table(["setup", "killed by", "kills", "median", "p95", "median / b's (crash)",
                  "median - floor"], rows), "",
           f"Target, median ratio a/b <= 1.0 (crash): {a_mid / docker_median:.2f}, "
           f"{verdict(ok_ratio)}. Target, within 0.5 s of the floor: "
           f"{(a_mid - floor_start) * 1000:+.0f} ms, {verdict(ok_floor)}. Docker did not "
           "restart a container stopped with `docker kill` (not within 10 s: moby treats a "
           "SIGKILL sent through its API as a stop on purpose), so b is compared on a crash "
           "of the process.", ""]

    marks = ["die", "destroy", "create", "start"]
    phase_rows = []
    for key, label in labels.items():
        kills = [k for k in result["crash_kills"][key] if k]
        phase_rows.append([label, *(ms(median([k[m] for k in kills if m in k]))
                                    if any(m in k for k in kills) else "-" for m in marks)])
    out += ["Where the time goes (crash; median time from the previous docker event to each: "
            "`die` = exit noticed, `destroy` = `--rm` removal done, `create` = the "
            "supervisor's `docker run` begins, `start` = running; b restarts the same "
            "container, so it has no destroy or create):", "",
            table(["setup", "kill -> die", "-> destroy", "-> create", "-> start"],
                  phase_rows), ""]

    wall = result["floor"]["wall"]
    out += ["### Physical floor: `docker run --rm --network host IMAGE true`", "",
            table(["runs", "invocation to container started, median", "p95",
                   "whole run incl. exit and removal, median", "p95"],
                  [[len(wall), ms(floor_start), ms(p95(result["floor"]["to_start"])),
                    ms(median(wall)), ms(p95(wall))]]), "",
            f"One more docker client call (`docker rm -f` of no container, as in the units' "
            f"ExecStartPre= and ExecStopPost=): median {ms(median(result['floor']['rm']))}.",
            ""]

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
