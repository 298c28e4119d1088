"""Work-based liveness against today's health check, on the real Celery update worker (issue 26).

    .venv/bin/python benchmarks/liveness.py [--ticks 300] [--heals 3]

One sandbox host with the real worker image (tests/e2e/celery_image.py), Debian's
redis-server, `install --worker update` and the agent at its default 10 s interval:
  - the work check's cost per worker and tick: `read_work` (one pipelined CLIENT LIST,
    LLEN, LINDEX, ZCARD round trip and the container's /proc TCP tables) run `--ticks`
    times inside the sandbox; CPU of the caller (process time) and of redis-server
    (/proc/<pid>/stat), per call;
  - beside it, in the same run, one `celery inspect ping` as Docker's health check runs it
    (`docker exec`: tests/e2e/celery_ops.cost_of counts dockerd, runc and the container);
  - time from a hang to heal: the worker stops consuming (`celery control cancel_consumer
    celery`, pings still answered), a task is queued, and the time until it has run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import log, machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

INTERVAL = 10.0  # the agent's default tick, seconds
PING_INTERVAL = 300.0  # today's health check (catalog.CELERY_PING)


def inside(ticks: int, pid: int) -> None:
    from tracardi_systemd.host.redis import ask
    from tracardi_systemd.observe.work import Consumer, read_work
    from tracardi_systemd.spec.catalog import CELERY_WORK, RedisWork

    redis_pid = int(subprocess.run(["pgrep", "-o", "redis-server"], capture_output=True,
                                   text=True, check=True).stdout)
    redis = ("127.0.0.1", 6379)

    def redis_cpu() -> float:
        fields = Path(f"/proc/{redis_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, USER_HZ = 100

    def measure(work: RedisWork) -> dict:
        consumers = [Consumer("tracardi-update.service", pid, work, redis, shared=True)]
        readings = read_work(consumers)
        started, cpu0, redis0 = time.monotonic(), time.process_time(), redis_cpu()
        for _ in range(ticks):
            read_work(consumers)
        return {"wall": (time.monotonic() - started) / ticks,
                "cpu": (time.process_time() - cpu0) / ticks,
                "redis_cpu": (redis_cpu() - redis0) / ticks,
                "reading": str(readings.get("tracardi-update.service"))}

    # The worker's own queue, empty: the common tick. Then a queue nobody takes from, with
    # a message waiting, read as on a tick that may judge: the TCP table too.
    ask(redis, [["LPUSH", "bench-waiting", "x"]])
    print(json.dumps({"idle": measure(CELERY_WORK),
                      "waiting": measure(RedisWork(queues=("bench-waiting",))),
                      "tcp_lines": len(Path(f"/proc/{pid}/net/tcp").read_text().splitlines()),
                      "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def outside(ticks: int, heals: int) -> None:
    from tests.e2e.celery_image import import_image, rootfs_tar
    from tests.e2e.celery_ops import (
        CONTAINER,
        consumed_within,
        control,
        cost_of,
        node_name,
        ping_command,
        queue_touch,
        wait_ready,
    )
    from tests.e2e.operator import install, write_env
    from tests.e2e.sandbox import Sandbox
    from tests.e2e.standin import start_redis

    tar, _ = rootfs_tar()
    host = Sandbox.boot()
    try:
        import_image(host, tar)
        start_redis(host)
        write_env(host)
        install(host, "--worker update")  # the agent at its default --interval 10
        host.run("systemctl start tracardi.target")
        wait_ready(host)
        pid = host.run(f"docker inspect -f '{{{{.State.Pid}}}}' {CONTAINER}").stdout.strip()
        log(f"work check x{ticks}")
        script = Path(__file__).resolve()
        python = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
        work = json.loads(host.run(f"{python} {script} --inside {ticks} {pid}",
                                   timeout=900).stdout.strip().splitlines()[-1])
        log("inspect ping x5")
        node = node_name(host)
        pings = [cost_of(host, ping_command(node, timeout=5)) for _ in range(5)]
        heal_times = []
        for n in range(heals):
            log(f"heal {n + 1}/{heals}")
            wait_ready(host)
            control(host, "cancel_consumer", "celery", "-d", node_name(host))
            queue_touch(host, f"bench-heal-{n}")
            queued = time.monotonic()
            took = consumed_within(host, f"bench-heal-{n}", 120)
            heal_times.append(None if took is None else time.monotonic() - queued)
        meminfo = Path("/proc/meminfo").read_text().split()
        memory_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20
    finally:
        host.shutdown()

    ping_cpu = statistics.median(p.sandbox_cpu + p.client_cpu for p in pings)
    ping_wall = statistics.median(p.wall for p in pings)
    print(f"Machine: {machine()}, {memory_gib:.1f} GiB of memory\n")
    print("| check | wall per check | CPU per check | interval | share of one core per worker |")
    print("|---|---|---|---|---|")
    for case, what in (("idle", "work-based, queue empty or moving (CLIENT LIST, LLEN, LINDEX, "
                                "ZCARD)"),
                       ("waiting", "work-based, work waited 15 s or more (the same and the "
                                   f"namespace's TCP table, {work['tcp_lines']} lines)")):
        m = work[case]
        share = 100 * (m["cpu"] + m["redis_cpu"]) / INTERVAL
        print(f"| {what}, mean of {ticks} | {m['wall'] * 1000:.2f} ms "
              f"| {m['cpu'] * 1000:.2f} ms agent + {m['redis_cpu'] * 1000:.2f} ms redis-server "
              f"| {INTERVAL:.0f} s | {share:.4f} % |")
    print(f"| `celery inspect ping` by `docker exec` (the health check before), median of 5 "
          f"| {ping_wall * 1000:.0f} ms | {ping_cpu * 1000:.0f} ms | {PING_INTERVAL:.0f} s "
          f"| {100 * ping_cpu / PING_INTERVAL:.4f} % |")
    print()
    shown = ", ".join("not healed" if t is None else f"{t:.1f} s" for t in heal_times)
    print(f"Hang to heal (a worker that stops consuming while its pidbox answers pings; a task "
          f"queued; until it has run), {heals} runs: {shown}. Docker's health check cannot "
          "see this hang at all (the ping is answered); for the kombu hang it answers after "
          f"{PING_INTERVAL:.0f}-{2 * PING_INTERVAL:.0f} s (two failures in a row).")
    met = all(t is not None and t <= 60 for t in heal_times)
    idle = work["idle"]
    share = 100 * (idle["cpu"] + idle["redis_cpu"]) / INTERVAL
    print(f"\nTarget, a hung worker healed within 60 s of the first task it fails to take: "
          f"{max((t or 999) for t in heal_times):.1f} s at most, "
          f"{'met' if met else '**not met**'}.")
    print(f"Target, the check's cost under 0.01 % of a core per worker: {share:.4f} % on a "
          f"tick with no work waiting long, {'met' if share < 0.01 else '**not met**'}.")
    print(f"\nreadings seen: {work['idle']['reading']}; {work['waiting']['reading']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--heals", type=int, default=3)
    parser.add_argument("--inside", nargs=2, type=int, metavar=("TICKS", "PID"))
    args = parser.parse_args()
    if args.inside:
        inside(*args.inside)
    else:
        outside(args.ticks, args.heals)


if __name__ == "__main__":
    main()
