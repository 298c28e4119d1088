"""A throw-away host with a real systemd (PID 1 of its own PID namespace) and a real dockerd.

A root filesystem is the read-only lower layer of an overlay: the machine's own (Debian
12), or another Debian release's (releases.py); every write lands in an upper dir on disk
under /var/tmp. Choices that are not obvious, each for a reason:

- pivot_root instead of chroot: the kernel refuses user namespaces to a chrooted process,
  so any unit with PrivateUsers= (Debian's redis-server.service has it) fails with
  status 217/USER under chroot.
- A cgroup namespace of its own, rooted at a fresh cgroup per sandbox, and a private tmpfs
  at /sys/fs/cgroup: with the host's /sys/fs/cgroup (recipe) systemd takes over the host's
  root cgroups (two sandboxes at once share system.slice/docker.service), creates
  directories in the host's /sys/fs/cgroup and remounts it read-only for the whole host.
- A network namespace of its own (only `lo`): 127.0.0.1 ports never collide with the
  host's, and containers run with `--network host` see the sandbox's loopback.
- The machine's /usr/local/bin/docker (a newer client) is hidden, so that `docker` means
  Debian's client inside, as on a Debian host with docker.io (systemd's default PATH puts
  /usr/local/bin first).
- Docker's and containerd's storage are directories on disk beside the overlay (not
  tmpfs), so that a persistent host keeps its images over a reboot; overlay2 works there
  because they are not on the overlay.
- The machine's console is replaced by a file, and its gettys are masked.

Layout of the sandbox's directory: upper/ work/ (the overlay), root/ (its mount point),
docker/ containerd/, boot.log, console.log.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .host import Host, HostError
from .releases import selected

DOCKER = "/usr/bin/docker"
CHECKOUT = Path(__file__).resolve().parents[2]
# What booting needs of the machine; scripts/packages.sh names the Debian packages.
REQUIRED_PROGRAMS = ("/lib/systemd/systemd", "/usr/sbin/dockerd", DOCKER, "/bin/busybox",
                     "/usr/bin/redis-server", "/usr/bin/nsenter", "/usr/bin/unshare", "/sbin/ip")

# Units of the machine not wanted inside: the gettys would open the machine's console.
MASKED_UNITS = ("getty.target", "console-getty.service", "postgresql.service",
                # test_monitoring.py starts them itself, on loopback, when it needs them.
                "prometheus.service", "prometheus-node-exporter.service")

# The environment of every command run inside (not the test runner's).
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}

BOOT_SCRIPT = """
set -eu
D={dir}; R=$D/root
mkdir -p $D/upper $D/work $D/docker $D/containerd $R
touch $D/console.log
mount -t overlay overlay -o lowerdir={lower},upperdir=$D/upper,workdir=$D/work $R
mount -t proc proc $R/proc
mount --rbind /sys $R/sys
# In the new cgroup namespace these show only this sandbox's subtree.
mount -t tmpfs -o mode=755 tmpfs $R/sys/fs/cgroup
{cgroup_mounts}
mount --rbind /dev $R/dev
mount --bind $D/console.log $R/dev/console
for d in run tmp; do mount -t tmpfs tmpfs $R/$d; done
for d in docker containerd; do
    mkdir -p $R/var/lib/$d; mount --bind $D/$d $R/var/lib/$d; done
# The checkout at the same path inside, after the tmpfs mounts (it may live under /tmp).
mkdir -p $R{checkout}; mount --bind {checkout} $R{checkout}
mkdir -p $R/etc/docker
echo '{{"bridge":"none","iptables":false,"ip6tables":false}}' > $R/etc/docker/daemon.json
for u in {masked}; do ln -sf /dev/null $R/etc/systemd/system/$u; done
rm -f $R/usr/local/bin/docker
ip link set lo up
cd $R; mkdir -p oldroot; pivot_root . oldroot; cd /; umount -l /oldroot
exec env -i container=other /lib/systemd/systemd --system
"""


class SandboxError(HostError):
    pass


def missing_programs() -> list[str]:
    """The programs a sandbox needs that this machine lacks."""
    return [path for path in REQUIRED_PROGRAMS if not os.path.exists(path)]


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of the machine's cgroup hierarchies."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        fstype, _, superopts = rest.split()
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((fields.split()[4], fstype, superopts))
    return mounts


def _own_cgroup(mountpoint: str, fstype: str, superopts: str) -> Path:
    """Our current cgroup in one hierarchy, as a directory under its mount point."""
    wanted = set(superopts.split(","))
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (fstype == "cgroup2" and not controllers) or (
            controllers and set(controllers.split(",")) <= wanted
        ):
            return Path(mountpoint + path)
    return Path(mountpoint)


def _pid_children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (2nd field) may contain spaces: parse after its ')'.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            children.append(int(stat.parent.name))
    return children


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


def _reaped(pid: int) -> bool:
    """Reap a child process of ours if it has ended; whether it is gone."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


class Sandbox(Host):
    Error = SandboxError
    env = INSIDE_ENV

    def __init__(self, directory: Path, owns_dir: bool, lower: Path = Path("/")) -> None:
        self.tool = selected().tool  # the checkout's, in a venv of the booted release's Python
        self.dir = directory
        self.lower = lower
        self._owns_dir = owns_dir
        self._cgroups: list[Path] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    @classmethod
    def boot(cls, persistent_dir: Path | None = None, timeout: float = 120,
             lower: Path = Path("/")) -> Sandbox:
        """Boot a sandbox whose root is an overlay of `lower` (the machine's own root by
        default); with persistent_dir, booting again on it is a reboot of that host."""
        if persistent_dir is None:
            directory = Path(tempfile.mkdtemp(prefix="tracardi-e2e-", dir="/var/tmp"))
            sandbox = cls(directory, True, lower)
        else:
            persistent_dir.mkdir(parents=True, exist_ok=True)
            sandbox = cls(persistent_dir.resolve(), False, lower)
        try:
            sandbox._start()
            sandbox._wait_until_up(timeout)
        except BaseException:
            sandbox.shutdown()
            raise
        return sandbox

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def _start(self) -> None:
        name = self.dir.name
        moves, mounts = [], []
        for mountpoint, fstype, superopts in _cgroup_mounts():
            cgroup = _own_cgroup(mountpoint, fstype, superopts) / f"sandbox-{name}"
            cgroup.mkdir(exist_ok=True)
            self._cgroups.append(cgroup)
            if (cgroup / "cpuset.cpus").exists():  # a v1 cpuset takes no task until set
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (cgroup / knob).write_text((cgroup.parent / knob).read_text())
            moves.append(f"echo $$ > {shlex.quote(str(cgroup / 'cgroup.procs'))}")
            inside = f'"$R"{shlex.quote(mountpoint)}'
            options = "" if fstype == "cgroup2" else f"-o {shlex.quote(superopts)}"
            mounts.append(f"mkdir -p {inside}; mount -t {fstype} {options} {fstype} {inside}")
        boot = BOOT_SCRIPT.format(
            dir=shlex.quote(str(self.dir)),
            lower=shlex.quote(str(self.lower)),
            checkout=shlex.quote(str(CHECKOUT)),
            cgroup_mounts="\n".join(mounts),
            masked=" ".join(MASKED_UNITS),
        )
        unshare = "unshare --pid --fork --mount --net --cgroup --propagation private"
        # The shell joins the fresh cgroups, then becomes `unshare`, whose new cgroup
        # namespace is rooted there; start_new_session is the recipe's setsid.
        command = "; ".join([*moves, f"exec {unshare} bash -c {shlex.quote(boot)}"])
        with open(self.dir / "boot.log", "ab") as log:
            self._proc = subprocess.Popen(
                ["sh", "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=INSIDE_ENV,
            )

    def _wait_until_up(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        # The sandbox's PID 1, seen from outside, is the child `unshare` forked.
        while not self.pid:
            if self._proc.poll() is not None:
                raise SandboxError(f"boot failed:\n{self.boot_log()}")
            if time.monotonic() > deadline:
                raise SandboxError(f"systemd did not start:\n{self.boot_log()}")
            for child in _pid_children(self._proc.pid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        self.pid = child
            time.sleep(0.05)
        # Until systemd's control socket exists, systemctl prints nothing (error on stderr).
        state = ""
        while state in ("", "offline") and time.monotonic() < deadline:
            time.sleep(0.05)
            state = self.run(
                "systemctl is-system-running --wait",
                check=False,
                timeout=deadline - time.monotonic(),
            ).stdout.strip()
        if state == "degraded":
            print(self.run("systemctl --failed --no-pager", check=False).stdout)
        elif state != "running":
            raise SandboxError(f"system state {state!r}:\n{self.boot_log()}")
        # docker.service may be socket-activated: start it, then wait for the API.
        self.run(
            f"systemctl start docker.service; until {DOCKER} info >/dev/null 2>&1; "
            "do sleep 0.2; done",
            timeout=max(deadline - time.monotonic(), 5),
        )

    def boot_log(self) -> str:
        return (self.dir / "boot.log").read_text(errors="replace")[-5000:]

    def command(self, cmd: str) -> list[str]:
        """`bash -c cmd` inside the sandbox (as root, cwd /)."""
        return ["nsenter", "-t", str(self.pid), "-m", "-p", "-r", "-w", "-n", "-C",
                "bash", "-c", cmd]

    def shutdown(self, timeout: float = 60) -> None:
        """Power off (kill after timeout), then remove what the sandbox left on the machine."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self._end_commands()
            if self.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGRTMIN + 4)  # systemd's power-off request
            try:
                proc.wait(timeout if self.pid else 0)
            except subprocess.TimeoutExpired:
                # When the PID namespace's init dies, the kernel kills every process in it.
                for pid in [*_pid_children(proc.pid), proc.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.wait(10)
        self._remove_cgroups()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _end_commands(self) -> None:
        """End the commands this process still runs inside, e.g. when a Ctrl-C cut run() short.

        A live nsenter stalls the power-off for its whole timeout: systemd-shutdown SIGSTOPs
        every process inside, nsenter (outside) then stops itself too and never reaps its
        killed child, which systemd-shutdown waits for. Killed first, the child is reaped.
        """
        prefix = ["nsenter", "-t", str(self.pid)]
        nsenters = [pid for pid in _pid_children(os.getpid()) if _argv(pid)[:3] == prefix]
        deadline = time.monotonic() + 5
        while nsenters and time.monotonic() < deadline:
            for pid in nsenters:
                for child in _pid_children(pid):  # none yet while nsenter joins namespaces
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
            time.sleep(0.05)
            nsenters = [pid for pid in nsenters if not _reaped(pid)]
        for pid in nsenters:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _remove_cgroups(self) -> None:
        # Processes of a dead namespace take a moment to go; a cgroup in use is EBUSY.
        deadline = time.monotonic() + 10
        while self._cgroups and time.monotonic() < deadline:
            for cgroup in list(self._cgroups):
                try:
                    for sub, _, _ in os.walk(cgroup, topdown=False):
                        os.rmdir(sub)
                    self._cgroups.remove(cgroup)
                except FileNotFoundError:
                    self._cgroups.remove(cgroup)
                except OSError:
                    time.sleep(0.1)
