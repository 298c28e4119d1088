"""An hour of faults under a steady stream of tasks, on the real Celery update worker (issue 26).

    .venv/bin/python benchmarks/soak.py [--minutes 60] [--seed 26] [--rate 2]

One sandbox host (a disk of its own, so it can be rebooted), Debian's redis-server, the
real worker image (tests/e2e/celery_image.py) as `install --worker update --replicas
update=2` with the agent at its default interval. A producer (a transient unit in the
sandbox) queues `record(key)` tasks at `--rate` per second the way Celery's `.delay()` does
(a protocol 2 message LPUSHed to the list `celery`), writing each accepted task's key and
send time to a file; while Redis is down it retries, and a task counts as sent only once
Redis took it. Each task RPUSHes who ran it and when onto its key. Faults come at seeded
random moments every 30-120 s (in a run shorter than 10 minutes: every kind once, in a
seeded order, 30-50 s apart): SIGKILL of a worker's container, `systemctl restart docker`,
Redis stopped for 10-90 s, the agent SIGKILLed, `systemctl restart tracardi.target`, a
reboot of the sandbox. At the end the stream stops and the queue may drain for 150 s.

Reports tasks sent, run, lost (never run), run twice, the longest wait (send to first run),
each fault's time to healthy (`tracardi-systemd status` exits 0 again) and the restarts
the agent made, by reason. A lost task that a worker logged as received before it was
SIGKILLed is counted apart: Celery acknowledges a task as it takes it, so what a killed
worker held is gone whatever supervises it. Exits 1 when a task was lost otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import shlex
import shutil
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from common import log, machine

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

PYTHON = CHECKOUT / ".venv" / "bin" / "python"
SENT_LOG = "/var/lib/soak-sent.log"
TASK = "tracardi.worker.celery_worker.record"
KINDS = ("kill-worker", "restart-docker", "redis-outage", "kill-agent", "restart-target",
         "reboot")
RESTART = "3f8f1de91e2a4b029c7c056644a116f1"
REARM = "80ea54c2b8564472b3df81f86f386bc0"
DRAIN = 150.0
HEALTHY_WITHIN = 300.0


def celery_message(key: str, task_id: str) -> bytes:
    """What Celery 5.2's `record.delay(key)` LPUSHes onto the list `celery` (protocol 2)."""
    body = json.dumps([[key], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                   "chord": None}])
    return json.dumps({
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": TASK, "id": task_id, "shadow": None, "eta": None,
                    "expires": None, "group": None, "group_index": None, "retries": 0,
                    "timelimit": [None, None], "root_id": task_id, "parent_id": None,
                    "argsrepr": repr((key,)), "kwargsrepr": "{}", "origin": "soak",
                    "ignore_result": False},
        "properties": {"correlation_id": task_id, "reply_to": str(uuid.uuid4()),
                       "delivery_mode": 2, "delivery_info": {"exchange": "",
                                                             "routing_key": "celery"},
                       "priority": 0, "body_encoding": "base64",
                       "delivery_tag": str(uuid.uuid4())},
    }).encode()


def produce(rate: float) -> None:
    """Inside the sandbox: queue tasks for ever; numbering goes on after a restart."""
    from tracardi_systemd.host.redis import RedisError, ask

    log_file = Path(SENT_LOG)
    seq = len(log_file.read_text().splitlines()) if log_file.exists() else 0
    with log_file.open("a") as out:
        while True:
            key, task_id = f"soak:{seq}", str(uuid.uuid4())
            try:
                ask(("127.0.0.1", 6379),
                    [["LPUSH", "celery", celery_message(key, task_id).decode()]])
            except RedisError:
                time.sleep(0.5)
                continue
            out.write(f"{key} {time.time():.3f} {task_id}\n")
            out.flush()
            seq += 1
            time.sleep(1 / rate)


def collect() -> None:
    """Inside the sandbox: every sent key's runs, as JSON {key: [sent, [run times], id]}."""
    from tracardi_systemd.host.redis import ask

    sent = [parts for parts in map(str.split, Path(SENT_LOG).read_text().splitlines())
            if len(parts) == 3]
    runs = {}
    for start in range(0, len(sent), 500):
        chunk = sent[start:start + 500]
        replies = ask(("127.0.0.1", 6379), [["LRANGE", key, "0", "-1"] for key, *_ in chunk])
        for (key, at, task_id), reply in zip(chunk, replies, strict=True):
            times = [float(entry.split()[-1]) for entry in reply] if isinstance(reply, list) else []
            runs[key] = [float(at), times, task_id]
    print(json.dumps(runs))


def faults_plan(minutes: float, rng: random.Random) -> list[tuple[float, str]]:
    """(seconds from the start, kind): every kind once in a short run, else at random."""
    plan, at = [], 0.0
    if minutes < 10:
        for kind in rng.sample(KINDS, len(KINDS)):
            at += rng.uniform(30, 50)
            plan.append((at, kind))
        return plan
    while True:
        at += rng.uniform(30, 120)
        if at > minutes * 60 - 60:
            return plan
        plan.append((at, rng.choice(KINDS)))


class Soak:
    def __init__(self, rate: float, rng: random.Random):
        from tests.e2e.celery_image import import_image, rootfs_tar
        from tests.e2e.sandbox import Sandbox

        self.rate, self.rng = rate, rng
        tar, _ = rootfs_tar()
        self.disk = Path("/var/tmp") / f"tracardi-soak-{uuid.uuid4().hex[:8]}"
        self.host = Sandbox.boot(self.disk)
        import_image(self.host, tar)
        self.restarts: Counter[str] = Counter()
        self.kills: list[tuple[float, str]] = []  # (unix time, container) of each SIGKILL

    def setup(self) -> None:
        from tests.e2e.operator import install, write_env
        from tests.e2e.standin import start_redis

        start_redis(self.host)
        self.host.run("systemctl enable -q redis-server")
        write_env(self.host)
        install(self.host, "--worker update --replicas update=2")
        self.host.run("systemctl start tracardi.target")
        self.start_producer()
        self.wait_healthy()

    def start_producer(self) -> None:
        script = shlex.quote(str(Path(__file__).resolve()))
        self.host.run(f"systemd-run -q --unit soak-producer -p Restart=always "
                      f"{PYTHON} {script} --produce {self.rate}")

    def healthy(self) -> bool:
        from tests.e2e.operator import TOOL

        return self.host.run(f"{TOOL} status >/dev/null", check=False).returncode == 0

    def wait_healthy(self) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < HEALTHY_WITHIN:
            if self.healthy():
                return time.monotonic() - started
            time.sleep(2)
        return None

    def count_restarts(self) -> None:
        """The agent's restarts and re-arms of this boot, by reason."""
        for message_id in (RESTART, REARM):
            out = self.host.run(f"journalctl -q -b 0 MESSAGE_ID={message_id} -o json",
                                check=False).stdout
            for line in out.splitlines():
                entry = json.loads(line)
                self.restarts[entry.get("TRACARDI_REASON", "?")] += 1

    def fault(self, kind: str) -> str:
        from tests.e2e.sandbox import Sandbox

        host = self.host
        if kind == "kill-worker":
            name = f"tracardi-update-{self.rng.choice((1, 2))}"
            self.kills.append((time.time(), name))
            host.run(f"docker kill -s KILL {name}", check=False)
            return name
        if kind == "restart-docker":
            host.run("systemctl restart docker", timeout=180)
            return ""
        if kind == "redis-outage":
            seconds = self.rng.uniform(10, 90)
            host.run("systemctl stop redis-server")
            time.sleep(seconds)
            host.run("systemctl start redis-server")
            return f"{seconds:.0f} s"
        if kind == "kill-agent":
            host.run("systemctl kill -s KILL tracardi-agent")
            return ""
        if kind == "restart-target":
            host.run("systemctl restart tracardi.target", timeout=180)
            return ""
        self.count_restarts()
        host.shutdown()
        self.host = Sandbox.boot(self.disk)
        self.host.wait_until("redis-cli ping | grep -qx PONG", timeout=60)
        self.start_producer()
        return ""

    def taken_by_killed(self, lost: dict[str, str]) -> list[str]:
        """The lost keys whose task a worker logged as received and never finished before
        it was SIGKILLed: Celery acknowledges a task as it takes it, so no supervisor can
        give back what a killed worker held. (The journal of boots before a reboot is read
        too; a task it holds no line of counts as lost otherwise.)"""
        taken = []
        for key, task_id in sorted(lost.items())[:50]:
            out = self.host.run(f"journalctl -q -o json --grep {shlex.quote(task_id)}",
                                check=False).stdout
            lines = [json.loads(line) for line in out.splitlines() if line.strip()]
            received = [(int(e["__REALTIME_TIMESTAMP"]) / 1e6, e.get("SYSLOG_IDENTIFIER", ""))
                        for e in lines if "received" in str(e.get("MESSAGE", ""))]
            if any(at <= killed and name == worker
                   for at, worker in received for killed, name in self.kills):
                taken.append(key)
        return taken

    def results(self) -> dict:
        script = shlex.quote(str(Path(__file__).resolve()))
        out = self.host.run(f"{PYTHON} {script} --collect", timeout=300).stdout
        return json.loads(out.strip().splitlines()[-1])


def outside(minutes: float, seed: int, rate: float) -> int:
    rng = random.Random(seed)
    plan = faults_plan(minutes, rng)
    log(f"{len(plan)} faults planned: {', '.join(kind for _, kind in plan)}")
    soak = Soak(rate, rng)
    timings = []
    try:
        soak.setup()
        began = time.monotonic()
        for at, kind in plan:
            time.sleep(max(0.0, at - (time.monotonic() - began)))
            log(f"fault: {kind}")
            detail = soak.fault(kind)
            took = soak.wait_healthy()
            log(f"  healthy again after {took}")
            timings.append((kind, detail, took))
        time.sleep(max(0.0, minutes * 60 - (time.monotonic() - began)))
        soak.host.run("systemctl stop soak-producer")
        log("draining")
        deadline = time.monotonic() + DRAIN
        while time.monotonic() < deadline and soak.host.run(
                "redis-cli llen celery").stdout.strip() != "0":
            time.sleep(2)
        time.sleep(5)  # the last tasks taken finish
        soak.count_restarts()
        runs = soak.results()
        lost = sorted(key for key, (_, times, _) in runs.items() if not times)
        taken = soak.taken_by_killed({key: runs[key][2] for key in lost})
    finally:
        soak.host.shutdown()
        shutil.rmtree(soak.disk, ignore_errors=True)

    sent = len(runs)
    ran = sum(1 for _, times, _ in runs.values() if times)
    twice = sum(1 for _, times, _ in runs.values() if len(times) > 1)
    waits = [min(times) - at for at, times, _ in runs.values() if times]
    otherwise = [key for key in lost if key not in taken]
    print(f"Machine: {machine()}\n")
    print(f"{minutes:g} minutes, seed {seed}, {rate:g} tasks/s, two replicas, "
          f"{len(plan)} faults.\n")
    print("| tasks sent | run | lost | run twice | longest wait |")
    print("|---|---|---|---|---|")
    print(f"| {sent} | {ran} | {len(lost)} | {twice} | {max(waits, default=0):.1f} s |\n")
    print("| fault | detail | time to healthy |")
    print("|---|---|---|")
    for kind, detail, took in timings:
        shown = "not within 300 s" if took is None else f"{took:.0f} s"
        print(f"| {kind} | {detail or '-'} | {shown} |")
    print("\n| agent restarts and re-arms, by reason | count |")
    print("|---|---|")
    for reason, count in sorted(soak.restarts.items()):
        print(f"| {reason} | {count} |")
    if lost:
        print(f"\nlost: {', '.join(lost[:20])}{' ...' if len(lost) > 20 else ''}")
    print(f"\nlost in a SIGKILLed worker's hands (received, never finished): {len(taken)}; "
          f"lost otherwise: {len(otherwise)}")
    longest = max(waits, default=0)
    print(f"\nTarget, no task lost over the soak but those a SIGKILL took from a worker's "
          f"hands (Celery acknowledges a task as it takes it): {len(otherwise)} lost otherwise, "
          f"{len(taken)} in a killed worker's hands, "
          f"{'met' if not otherwise else '**not met**'}.")
    print(f"Target, longest wait under 90 s: {longest:.1f} s, "
          f"{'met' if longest < 90 else '**not met**'}.")
    return 1 if otherwise else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--rate", type=float, default=2.0, help="tasks per second")
    parser.add_argument("--produce", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--collect", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        produce(args.produce)
        return 0
    if args.collect:
        collect()
        return 0
    return outside(args.minutes, args.seed, args.rate)


if __name__ == "__main__":
    sys.exit(main())
