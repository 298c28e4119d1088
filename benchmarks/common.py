"""What the benchmarks share: the e2e sandbox host, docker events, statistics, markdown.

Each benchmark script runs in two halves: outside, it boots a sandbox (tests/e2e/sandbox.py:
a real systemd 252 and Debian's dockerd in a throw-away overlay) and sets the host up; inside,
the same script is run again (`--inside ...`, with the project's venv) to do the timing next
to systemd and dockerd, and prints one JSON line that the outside half turns into tables.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import queue
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from tests.e2e.host import Host  # noqa: E402
from tests.e2e.operator import ENV_SOURCE, INSTALLED_ENV, TOOL, install, write_env  # noqa: E402
from tests.e2e.sandbox import Sandbox  # noqa: E402
from tests.e2e.standin import (  # noqa: E402
    TRACARDI_TAG,
    build_standin_images,
    start_fake_elasticsearch,
    start_redis,
)

__all__ = ["ENV_SOURCE", "INSTALLED_ENV", "TOOL", "install", "write_env"]

VENV_PYTHON = str(CHECKOUT / ".venv" / "bin" / "python")
IMAGE = f"tracardi/com-tracardi-scheduler-worker:{TRACARDI_TAG}"
WORKERS = ["update", "segmentation", "scheduler", "post-collection", "trigger"]


# ---------------------------------------------------------------- outside the sandbox

@contextlib.contextmanager
def sandbox_host() -> Iterator[Sandbox]:
    """A booted host with the stand-in images, Redis, a TCP listener as Elasticsearch and
    the operator's env file; always shut down, also on an exception or SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    host = Sandbox.boot()
    try:
        build_standin_images(host)
        start_redis(host)
        start_fake_elasticsearch(host)
        write_env(host)
        yield host
    finally:
        host.shutdown()


_STARTED = time.monotonic()


def log(message: str) -> None:
    """Progress on stderr, with the seconds since the script started."""
    print(f"[{time.monotonic() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


def inside(host: Host, script: str, *args: object, timeout: float = 900,
           python: str = VENV_PYTHON) -> dict:
    """Run `script --inside args...` in the sandbox with the venv (or on a VM guest with
    the deb's python, the script copied to the same path); its last line, as JSON."""
    argv = [python, str(Path(script).resolve()), "--inside", *map(str, args)]
    out = host.run(shlex.join(argv), timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} CPUs (nproc), {model}, Linux {platform.release()}"


# ---------------------------------------------------------------- inside the sandbox

def sh(cmd: str, check: bool = True) -> str:
    result = subprocess.run(cmd, shell=True, text=True, capture_output=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Event:
    action: str  # docker's Action: create, start, kill, die, destroy, ...
    name: str
    id: str
    time: float  # seconds since the epoch, from the daemon's timeNano


def podman_events() -> list[str]:
    """`podman events` from now on: it replays from the journal what came after --since,
    so nothing is missed while the (slow to start) podman process subscribes."""
    return ["podman", "events", "--filter", "type=container", "--format", "json",
            "--since", f"{time.time():.6f}"]


class Events:
    """`docker events` (or `podman events`, command=podman_events()) for containers, read
    by a thread into a queue.

    Why events and not polling `docker inspect`: each event carries the daemon's own
    nanosecond timestamp of the moment it happened, so a kill and the replacement's start
    are timed on one clock with no polling interval, and watching costs no extra docker
    client processes competing for the 2 CPUs while the recovery runs. Podman has no
    daemon: each podman process stamps its events (timeNano) as it writes them to the
    journal, on the same clock.
    """

    def __init__(self, command: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            command or ["docker", "events", "--filter", "type=container",
                        "--format", "{{json .}}"],
            stdout=subprocess.PIPE, text=True)
        self.queue: queue.Queue[Event] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.3)  # the subscription is in place before anything is done

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.queue.put(parse_event(json.loads(line)))

    def wait(self, match: Callable[[Event], bool], timeout: float) -> Event | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                return None
            if match(event):
                return event
        return None

    def drain(self) -> list[Event]:
        events = []
        with contextlib.suppress(queue.Empty):
            while True:
                events.append(self.queue.get_nowait())
        return events

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def parse_event(data: dict) -> Event:
    """An event of `docker events`, or of `podman events --format json` (its own shape:
    Status, Name and ID at the top; `died` where docker says `die`)."""
    if "Actor" in data:
        return Event(data.get("Action", ""), data["Actor"]["Attributes"].get("name", ""),
                     data.get("id", ""), int(data["timeNano"]) / 1e9)
    return Event(data.get("Status", ""), data.get("Name", ""), data.get("ID", ""),
                 int(data["timeNano"]) / 1e9)


def main_pid(unit: str) -> int:
    return int(sh(f"systemctl show -p MainPID --value {unit}").strip() or 0)


def own_cpu() -> float:
    """CPU seconds of this process and of the children it reaped, to the microsecond."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def threads_cpu(pid: int) -> float:
    """CPU seconds of all threads of `pid`, to the nanosecond (/proc/PID/task/*/schedstat);
    0 for a process that is gone."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def reaped_children_cpu(pid: int) -> float:
    """CPU seconds of the children `pid` ran and reaped (cutime + cstime, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """Resident (VmRSS) and proportional (Pss) memory of `pid`, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return {"rss": _kib(status, "VmRSS:"), "pss": _kib(rollup, "Pss:")}


def _kib(text: str, key: str) -> int:
    return next(int(line.split()[1]) for line in text.splitlines() if line.startswith(key))


def container_id(name: str) -> str:
    return sh(f"docker inspect -f '{{{{.Id}}}}' {name} 2>/dev/null", check=False).strip()


def running_count(label: str = "tracardi.managed=true") -> int:
    return len(sh(f"docker ps -q --filter label={label} --filter status=running").split())


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


# ---------------------------------------------------------------- figures and tables

def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], rank: int) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-rank * len(ordered) // 100) - 1)]


def p95(values: list[float]) -> float:
    return percentile(values, 95)


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def secs(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def print_result(result: dict, report: Callable[[dict], str], json_path: str | None) -> None:
    """The outside half's answer: the machine and the tables on stdout (benchmarks/run keeps
    all but the Machine line), the raw figures also in json_path if given."""
    if json_path:
        Path(json_path).write_text(json.dumps(result))
    print(f"Machine: {machine()}\n")
    print(report(result))


def emit(result: dict) -> None:
    """The inside half's answer: one JSON line on stdout."""
    print(json.dumps(result), flush=True)
