#!/usr/bin/env python3
"""Record real Docker Engine API responses and a real cgroup v1 tree from the e2e sandbox.

    sudo .venv/bin/python tests/recorded/record.py
    sudo TRACARDI_E2E_RELEASE=trixie .venv/bin/python tests/recorded/record.py

Outside, it boots a sandbox host of the selected release (tests/e2e/releases.py: Debian
12's dockerd 20.10, API 1.41; Debian 13's dockerd 26.1, API 1.45) with the stand-in images,
and runs itself inside (`--inside`), where it talks raw HTTP to /run/docker.sock
(`Connection: close`, read to the end, bytes kept as sent, headers and chunked framing
included) in the daemon's own API version. It rewrites tests/recorded/docker-<X.Y>/ for
dockerd X.Y; on Debian 12 also tests/recorded/cgroup-v1/ (a running container's cgroup
files). Where dockerd knows DOCKER_MIN_API_VERSION (26.1), it then restarts it with 1.44,
as Docker 29 starts, and records its /version and its refusal of an API 1.41 request.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
CGROUP_DIR = HERE / "cgroup-v1"
SOCKET = "/run/docker.sock"
OLD_API = "/v1.41"  # what tracardi-systemd pinned before it negotiated
FLOOR = "1.44"  # Docker 29's MinAPIVersion
FLOOR_DROP_IN = "/etc/systemd/system/docker.service.d/min-api-version.conf"
LABEL = "tracardi.managed=true"
IMAGE = "tracardi/com-tracardi-scheduler-worker:0.8.1"
EVENT_FILTERS = {"type": ["container"], "label": [LABEL],
                 "event": ["die", "oom", "start", "destroy", "health_status"]}


# ---------------------------------------------------------------- inside the sandbox

def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, text=True, capture_output=True).stdout


def wait_until(cmd: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(cmd, shell=True, text=True, capture_output=True, check=False)
        if result.returncode == 0:
            return result.stdout
        if time.monotonic() > deadline:
            raise RuntimeError(f"still failing after {timeout} s: {cmd}")
        time.sleep(0.1)


def query(path: str, **params: object) -> str:
    encoded = {k: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v
               for k, v in params.items()}
    return path + ("?" + urllib.parse.urlencode(encoded) if encoded else "")


def connect(method: str, target: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(SOCKET)
    sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
                 .encode())
    return sock


def exchange(method: str, target: str) -> bytes:
    with connect(method, target) as sock:
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


class Recorder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.index: dict[str, str] = {}

    def save(self, name: str, method: str, target: str, data: bytes) -> None:
        (self.directory / name).write_bytes(data)
        self.index[name] = f"{method} {target}"

    def record(self, name: str, method: str, target: str) -> bytes:
        data = exchange(method, target)
        self.save(name, method, target, data)
        return data


def run_labelled(name: str, *flags: str) -> str:
    return sh(f"docker run -d --network host --init --label {LABEL} --name {name} "
              f"{' '.join(flags)} {IMAGE}").strip()


def record_events(rec: Recorder, api: str) -> None:
    """A live stream while containers start, die, get OOM-killed, turn healthy, go away."""
    target = query(f"{api}/events", filters=EVENT_FILTERS)
    sock = connect("GET", target)
    sh(f"docker run -d --network host --init --name rec-unlabelled {IMAGE}")  # filtered out
    run_labelled("rec-victim")
    sh("docker kill rec-victim")
    sh("docker start rec-victim")
    run_labelled("rec-health", "--health-cmd true --health-interval 1s")
    wait_until("docker inspect -f '{{.State.Health.Status}}' rec-health | grep -qx healthy")
    run_labelled("rec-oom", "--memory 24m --memory-swap 24m", "-e STANDIN_ALLOC_MB_SCHEDULER=60")
    wait_until("docker inspect -f '{{.State.Status}}' rec-oom | grep -qx exited")
    sh("docker rm -f rec-victim rec-unlabelled")
    # The stream never ends by itself: read until it has been quiet for a second.
    sock.settimeout(1.0)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    sock.close()
    rec.save("events.http", "GET", target, data)

    body = data.split(b"\r\n\r\n", 1)[1]
    events = [json.loads(line) for line in body.split(b"\n") if line.startswith(b"{")]
    first_die = next(e for e in events if e["Action"] == "die")
    since = f"{first_die['timeNano'] // 10**9}.{first_die['timeNano'] % 10**9:09d}"
    until = f"{time.time():.9f}"
    rec.record("events-since.http", "GET",
               query(f"{api}/events", since=since, until=until, filters=EVENT_FILTERS))


def record_calls(rec: Recorder, api: str) -> None:
    rec.record("version.http", "GET", "/version")
    rec.record("ping.http", "GET", "/_ping")
    rec.record("version-too-new.http", "GET", "/v1.99/version")
    rec.record("containers.http", "GET", containers_target(api))
    worker = sh("docker inspect -f '{{.Id}}' rec-worker").strip()
    rec.record("inspect.http", "GET", f"{api}/containers/{worker}/json")
    rec.record("inspect-404.http", "GET", f"{api}/containers/no-such-container/json")
    oom = sh("docker inspect -f '{{.Id}}' rec-oom").strip()
    rec.record("remove.http", "DELETE", f"{api}/containers/{oom}?force=1")
    rec.record("remove-404.http", "DELETE", f"{api}/containers/no-such-container?force=1")


def containers_target(api: str) -> str:
    return query(f"{api}/containers/json", all=1, filters={"label": [LABEL]})


def restart_docker(environment: str) -> None:
    Path(FLOOR_DROP_IN).parent.mkdir(parents=True, exist_ok=True)
    if environment:
        Path(FLOOR_DROP_IN).write_text(f"[Service]\nEnvironment={environment}\n")
    else:
        Path(FLOOR_DROP_IN).unlink(missing_ok=True)
    sh("systemctl daemon-reload && systemctl restart docker.service")
    wait_until("docker version")


def record_floor(rec: Recorder) -> None:
    """dockerd started as Docker 29 starts (MinAPIVersion 1.44): its /version, and its
    answer to the API 1.41 request that tracardi-systemd sent before it negotiated."""
    restart_docker(f"DOCKER_MIN_API_VERSION={FLOOR}")
    try:
        version = json.loads(exchange("GET", "/version").split(b"\r\n\r\n", 1)[1])
        if version.get("MinAPIVersion") != FLOOR:
            print(f"dockerd {version.get('Version')} ignores DOCKER_MIN_API_VERSION: "
                  "no floor recordings")
            return
        rec.record(f"version-min-{FLOOR}.http", "GET", "/version")
        rec.record(f"refused-{OLD_API[2:]}.http", "GET", containers_target(OLD_API))
    finally:
        restart_docker("")


def record_cgroup(name: str) -> dict:
    """The cgroup files the reader uses for one container, and what docker stats says."""
    pid = int(sh(f"docker inspect -f '{{{{.State.Pid}}}}' {name}"))
    cid = sh(f"docker inspect -f '{{{{.Id}}}}' {name}").strip()
    cgroup_file = Path(f"/proc/{pid}/cgroup").read_text()
    memory_path = next(line.split(":", 2)[2] for line in cgroup_file.splitlines()
                       if "memory" in line.split(":")[1].split(","))
    stats = sh(f"docker stats --no-stream --format '{{{{.MemUsage}}}}' {name}").strip()
    source = Path("/sys/fs/cgroup/memory" + memory_path)
    files = {f"proc/{pid}/cgroup": cgroup_file}
    for knob in ("memory.usage_in_bytes", "memory.stat"):
        files[f"sys/fs/cgroup/memory{memory_path}/{knob}"] = (source / knob).read_text()
    # This machine mounts cgroups hybrid: v1 controllers plus a v2 tree without memory.
    files["sys/fs/cgroup/unified/cgroup.controllers"] = Path(
        "/sys/fs/cgroup/unified/cgroup.controllers").read_text()
    for relative, text in files.items():
        path = CGROUP_DIR / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"name": name, "pid": pid, "container": cid, "docker_stats_mem_usage": stats}


def inside() -> None:
    server = json.loads(sh("docker version --format '{{json .Server}}'"))
    docker_dir = HERE / f"docker-{'.'.join(server['Version'].split('.')[:2])}"
    api = f"/v{server['ApiVersion']}"
    with_cgroups = Path("/sys/fs/cgroup/memory").is_dir() and docker_dir.name == "docker-20.10"
    for directory in (docker_dir, CGROUP_DIR) if with_cgroups else (docker_dir,):
        for path in directory.glob("*"):
            if path.name != "README.md":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        directory.mkdir(parents=True, exist_ok=True)
    run_labelled("rec-worker", "-e STANDIN_ALLOC_MB_SCHEDULER=60")
    # Page cache, which the kernel charges to the container and docker stats leaves out.
    sh(f"docker run -d --network host --name rec-cache {IMAGE} sh -c "
       "'head -c 41943040 /dev/zero > /tmp/f && sync && echo written && exec sleep 1000'")
    wait_until("docker logs rec-worker | grep -q 'standin holding 60 MB'")
    wait_until("docker logs rec-cache | grep -q written")
    rec = Recorder(docker_dir)
    record_events(rec, api)
    record_calls(rec, api)
    if with_cgroups:
        recorded = [record_cgroup(name) for name in ("rec-worker", "rec-cache")]
        (CGROUP_DIR / "recorded.json").write_text(json.dumps(recorded, indent=2) + "\n")
    record_floor(rec)
    (docker_dir / "requests.json").write_text(json.dumps(rec.index, indent=2) + "\n")


# ---------------------------------------------------------------- outside

def outside() -> None:
    sys.path.insert(0, str(CHECKOUT))
    from tests.e2e.releases import prepare, selected
    from tests.e2e.sandbox import Sandbox
    from tests.e2e.standin import build_standin_images

    release = selected()
    with Sandbox.boot(lower=prepare(release)) as host:
        build_standin_images(host, images=[IMAGE.split(":")[0]])
        host.run("systemctl start redis-server.service")
        result = host.run(f"{release.python} {Path(__file__).resolve()} --inside", timeout=300)
        print(result.stdout + result.stderr, end="")


if __name__ == "__main__":
    inside() if sys.argv[1:] == ["--inside"] else outside()
