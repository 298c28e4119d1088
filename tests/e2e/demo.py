"""`scripts/demo`: the tool's main job shown for real in a throw-away sandbox, or the units.

As root on a machine that can boot the end-to-end sandbox (sandbox.py), it installs the
workers as systemd services on stand-in images (standin.py), starts them, kills a worker's
container and times its return, shows the agent removing a container no unit owns, and
tears everything down, also on a failure or Ctrl-C. Elsewhere it renders the unit files
into ./rendered-units and says how to see the rest.

Run it as `python -m tests.e2e.demo` from the checkout (scripts/demo does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from .operator import ENV_SOURCE, TOOL, wait_running
from .sandbox import CHECKOUT, Sandbox, SandboxError, missing_programs
from .standin import TRACARDI_TAG, build_standin_images, start_fake_elasticsearch, start_redis

# Relative to the checkout, the working directory, as the README names them.
EXAMPLE_ENV = Path("examples/env-docker.example")
RENDERED = "rendered-units"
# The example's settings that must point at the sandbox's own loopback.
SANDBOX_SETTINGS = {"ELASTIC_HOST": "http://127.0.0.1:9200", "REDIS_HOST": "127.0.0.1"}
AGENT_INTERVAL = 2  # the default is 10 s: shortened so that the agent acts within the demo
KILLED = "tracardi-scheduler"
STRAY = "tracardi-stray"
STRAY_IMAGE = f"tracardi/com-tracardi-scheduler-worker:{TRACARDI_TAG}"
ORPHAN_FIELDS = "PRIORITY,MESSAGE,TRACARDI_CONTAINER,TRACARDI_UNIT,TRACARDI_REASON"
HINT = "run `sudo scripts/demo` to see it install, run and heal workers in a throw-away sandbox"


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    os.chdir(CHECKOUT)
    # SIGINT too: a shell that starts the demo in the background has it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        return run()
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130


def run() -> int:
    """The live demo where the sandbox boots, else the rendered units."""
    if os.geteuid() != 0:
        return render_only("Not root, so the units were only rendered", HINT)
    missing = missing_programs()
    if missing:
        return render_only(f"This machine cannot boot the sandbox: it lacks {' '.join(missing)}",
                           "scripts/packages.sh names the Debian packages it needs")
    started = time.monotonic()
    heading("Boot a throw-away sandbox: this machine's systemd and Docker in an overlay")
    try:
        host = Sandbox.boot()  # shuts itself down when it fails
    except SandboxError as exc:
        last_line = str(exc).strip().splitlines()[-1]
        return render_only(f"The sandbox did not boot ({last_line})", "see tests/e2e/sandbox.py")
    # Nothing between boot and this try: a Ctrl-C from here on must reach the finally.
    try:
        shown = Demo(host, started).show_main_job()
    finally:
        removed = shut_down(host)
    if shown and removed:
        print(f"\n(the demo took {time.monotonic() - started:.0f} s)")
    return 0 if shown and removed else 1


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def heading(title: str) -> None:
    print(f"\n== {title}")


def render_only(reason: str, hint: str) -> int:
    heading(f"Render the units of every worker from examples/env-docker.example into ./{RENDERED}")
    EXAMPLE_ENV.chmod(0o600)  # git keeps no 0600; check warns about readable secrets
    check = subprocess.run([TOOL, "check", "--env-file", str(EXAMPLE_ENV)], check=False)
    render = subprocess.run(
        [TOOL, "render", "--env-file", str(EXAMPLE_ENV), "--out", RENDERED],
        stdout=subprocess.DEVNULL,
        check=False,
    )
    if check.returncode or render.returncode:
        return 1
    for path in sorted(Path(RENDERED).iterdir()):
        print(f"\n===== {path} =====\n{path.read_text()}", end="")
    print(f"\n{reason}: {hint}.")
    return 0


def shut_down(host: Sandbox) -> bool:
    """Power the sandbox off and remove its directory (a second Ctrl-C must not stop this);
    whether the directory is gone."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    host.shutdown()
    if host.dir.exists():
        print(f"sandbox powered off, but {host.dir} is left: remove it", file=sys.stderr)
        return False
    print(f"sandbox powered off, {host.dir} removed")
    return True


def sandbox_env_file() -> str:
    """examples/env-docker.example without its comments, pointed at the sandbox."""
    lines = []
    for line in EXAMPLE_ENV.read_text().splitlines():
        name, sep, _ = line.partition("=")
        if sep and not line.startswith("#"):
            lines.append(f"{name}={SANDBOX_SETTINGS[name]}" if name in SANDBOX_SETTINGS else line)
    return "".join(f"{line}\n" for line in lines)


def started_at(host: Sandbox, container_id: str) -> float:
    """When Docker started a container, as a Unix time."""
    text = host.run(f"docker inspect -f '{{{{.State.StartedAt}}}}' {container_id}").stdout
    return datetime.fromisoformat(text.strip()).timestamp()


class Demo:
    """The steps of the live demo on one sandbox host, narrated as an operator types them."""

    def __init__(self, host: Sandbox, started: float) -> None:
        self.host = host
        self.started = started
        self.step = "boot"

    def show_main_job(self) -> bool:
        """Run every step; False, with a message on stderr, when one fails."""
        try:
            self.prepare()
            self.write_env_file()
            self.install()
            self.start()
            self.kill_a_worker()
            self.remove_a_stray_container()
            self.uninstall()
        except SandboxError as exc:
            print(f"\ndemo failed at '{self.step}':\n{exc}", file=sys.stderr)
            return False
        return True

    def heading(self, title: str) -> None:
        self.step = title
        heading(title)

    def shell(self, command: str, shown: str = "") -> str:
        """Show a command as typed at a root prompt, run it inside, show its output."""
        shown = shown or command
        print(f"# {shown}")
        result = self.host.run(f"{command} 2>&1", check=False)
        print(result.stdout, end="")
        if result.returncode != 0:
            raise SandboxError(f"`{shown}` exited with status {result.returncode}")
        return result.stdout

    def tool(self, args: str) -> str:
        return self.shell(f"{TOOL} {args}", shown=f"tracardi-systemd {args}")

    def prepare(self) -> None:
        systemd = self.host.run("systemctl --version").stdout.split("(")[0].strip()
        docker = self.host.run("docker version -f '{{.Server.Version}}'").stdout.strip()
        print(f"{systemd} and Docker {docker} up in {time.monotonic() - self.started:.1f} s, "
              f"in {self.host.dir}")
        self.step = "stand-in images, Redis and Elasticsearch"
        build_standin_images(self.host)
        start_redis(self.host)
        start_fake_elasticsearch(self.host)
        print(f"stand-in worker images built (busybox and a script, named tracardi/...:"
              f"{TRACARDI_TAG});\nRedis and a stand-in Elasticsearch listen on 127.0.0.1")

    def write_env_file(self) -> None:
        self.heading("The operator's env file: examples/env-docker.example, for the sandbox")
        self.host.run(
            f"install -m 600 /dev/null {ENV_SOURCE} && cat > {ENV_SOURCE}",
            input=sandbox_env_file(),
        )
        self.shell(f"cat {ENV_SOURCE}")

    def install(self) -> None:
        self.heading(f"Install the workers as systemd services (agent cycle {AGENT_INTERVAL} s "
                     "instead of 10, for the demo)")
        self.tool(f"install --env-file {ENV_SOURCE} --network host "
                  f"--agent-interval {AGENT_INTERVAL}")

    def start(self) -> None:
        self.heading("Start them")
        self.shell("systemctl start tracardi.target")
        with contextlib.suppress(SandboxError):  # then status shows what is not healthy
            self.host.wait_until(f"{TOOL} status >/dev/null", timeout=30)
        self.tool("status")

    def kill_a_worker(self) -> None:
        self.heading("Kill a worker's container: systemd runs a new one")
        old = self.host.run(f"docker inspect -f '{{{{.Id}}}}' {KILLED}").stdout.strip()
        killed_at = time.time()
        self.shell(f"docker kill {KILLED}")
        try:
            new = wait_running(self.host, KILLED, other_than=old)
        except SandboxError:
            raise SandboxError(f"{KILLED} did not run again within 30 s") from None
        seconds = started_at(self.host, new) - killed_at
        print(f"{KILLED} runs again {seconds:.1f} s after the kill "
              f"(container {old[:12]} replaced by {new[:12]})")

    def remove_a_stray_container(self) -> None:
        self.heading("A container with the tool's label that no active unit owns: "
                     "the agent removes it")
        created = time.monotonic()
        self.shell(f"docker run -d --name {STRAY} --label tracardi.managed=true "
                  f"--label tracardi.unit=tracardi-old.service {STRAY_IMAGE}")
        timeout = 8 * AGENT_INTERVAL
        try:
            self.host.wait_until(f"! docker inspect {STRAY} >/dev/null 2>&1", timeout=timeout)
        except SandboxError:
            raise SandboxError(f"the agent did not remove {STRAY} within {timeout} s") from None
        print(f"gone after {time.monotonic() - created:.1f} s; the agent's journal entry:")
        entry = f"-t tracardi-agent TRACARDI_ACTION=orphan_removed TRACARDI_CONTAINER={STRAY}"
        self.host.wait_until(f"journalctl -q {entry} | grep -q .", timeout=5)
        self.shell(f"journalctl {entry} -o verbose --output-fields={ORPHAN_FIELDS}")

    def uninstall(self) -> None:
        self.heading("Tear down")
        self.tool("uninstall --purge")


if __name__ == "__main__":
    sys.exit(main())
