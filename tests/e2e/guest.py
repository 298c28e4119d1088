"""A Debian VM under qemu for the VM tier: a real kernel with the unified cgroup v2
hierarchy, booted from the disk scripts/vm-image makes, driven over ssh.

Choices that are not obvious, each for a reason:

- Software emulation (`-accel tcg`): this machine's /dev/kvm is PVM (`nested_pvm=1`),
  which runs only kernels built as PVM guests; Debian's hangs under it right after it is
  decompressed (docs/design.md, "The VM tier").
- The guest writes to a qcow2 overlay of the cached image, in a folder of its own: a
  reboot and a power loss keep what it wrote, nothing is written to the cache.
- Its only network is qemu's user-mode one with `restrict=on` (the guest reaches nothing,
  not even the host) and one forward from a loopback port to its ssh server.
- One ssh master connection per boot, which every command shares: a new ssh handshake
  costs about a second of the emulated CPU.

Layout of the guest's directory: disk.qcow2, console.log (the serial console, every
boot), ssh.sock.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .host import Host, HostError

# The environment of every command run inside (sshd's default PATH lacks the sbin folders).
INSIDE = ("env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "
          "LANG=C.UTF-8")


class GuestError(HostError):
    pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Guest(Host):
    Error = GuestError
    tool = "/usr/bin/tracardi-systemd"  # the deb's
    python = "/opt/tracardi-systemd/bin/python"
    # TCG runs the guest's work 6-10x slower than native, and more on a busy machine.
    slowness = float(os.environ.get("TRACARDI_VM_SLOWNESS", "6"))

    def __init__(self, image: Path, release: str, directory: Path, cpus: int,
                 memory_mib: int) -> None:
        self.image = image
        self.release = release
        self.dir = directory
        self.cpus = cpus
        self.memory_mib = memory_mib
        self.port = 0
        self._qemu: subprocess.Popen[bytes] | None = None
        self._master: subprocess.Popen[bytes] | None = None

    @classmethod
    def boot(cls, image: Path, release: str, cpus: int = 2, memory_mib: int = 1536,
             timeout: float = 300) -> Guest:
        """Boot a new VM of `release` on a copy-on-write overlay of `image` (scripts/vm-image's
        folder)."""
        directory = Path(tempfile.mkdtemp(prefix=f"tracardi-vm-{release}-", dir="/var/tmp"))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        str(image / "disk.img"), str(directory / "disk.qcow2")], check=True)
        guest = cls(image, release, directory, cpus, memory_mib)
        try:
            guest._start(timeout)
        except BaseException:
            guest.shutdown()
            raise
        return guest

    # --- the machine ---------------------------------------------------------------------

    def _start(self, timeout: float) -> None:
        self.port = _free_port()
        append = "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 quiet"
        argv = [
            "qemu-system-x86_64", "-accel", "tcg", "-smp", str(self.cpus),
            "-m", str(self.memory_mib), "-nodefaults", "-no-user-config", "-display", "none",
            "-chardev", f"file,id=console,path={self.dir / 'console.log'},append=on",
            "-serial", "chardev:console",
            "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
            "-append", append,
            "-drive", f"file={self.dir / 'disk.qcow2'},if=virtio,format=qcow2",
            "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device", "virtio-net-pci,netdev=net0",
            "-device", "virtio-rng-pci",
        ]
        with open(self.dir / "qemu.log", "ab") as log:
            self._qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_until_up(timeout)

    def _ssh(self, *options: str) -> list[str]:
        return ["ssh", "-i", str(self.image / "id_ed25519"), "-p", str(self.port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                "-o", f"ControlPath={self.dir / 'ssh.sock'}", *options, "root@127.0.0.1"]

    def _wait_until_up(self, timeout: float) -> None:
        """Until ssh answers, the master connection is up, systemd has booted and dockerd
        answers."""
        deadline = time.monotonic() + timeout
        while True:
            if self._qemu is not None and self._qemu.poll() is not None:
                raise GuestError(f"qemu exited {self._qemu.returncode}:\n{self.console()}")
            probe = subprocess.run(
                [*self._ssh("-o", "ConnectTimeout=5", "-o", "ControlMaster=no"), "true"],
                capture_output=True, timeout=60, check=False)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise GuestError(f"no ssh after {timeout:.0f} s:\n{self.console()}")
            time.sleep(1)
        self._master = subprocess.Popen(
            self._ssh("-M", "-N", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        while not (self.dir / "ssh.sock").exists():
            if time.monotonic() > deadline or self._master.poll() is not None:
                raise GuestError("the ssh master connection did not start")
            time.sleep(0.1)
        state = self.run("systemctl is-system-running --wait", check=False,
                         timeout=max(deadline - time.monotonic(), 10)).stdout.strip()
        if state == "degraded":
            print(self.run("systemctl --failed --no-pager", check=False).stdout)
        elif state != "running":
            raise GuestError(f"system state {state!r}:\n{self.console()}")
        self.run("systemctl start docker.service; until docker info >/dev/null 2>&1; "
                 "do sleep 0.5; done", timeout=max(deadline - time.monotonic(), 10))

    def console(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "console.log").read_text(errors="replace")[-5000:]
        return ""

    def boot_id(self) -> str:
        return self.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def reboot(self, timeout: float = 300) -> float:
        """`systemctl reboot` inside (qemu stays, the guest's firmware starts it again);
        the seconds until it is up again."""
        before = self.boot_id()
        started = time.monotonic()
        self.run("systemctl reboot", check=False, timeout=30)
        self._end_master()
        self._wait_until_up(timeout)
        if self.boot_id() == before:
            raise GuestError("the guest did not reboot")
        return time.monotonic() - started

    def power_loss(self, timeout: float = 300) -> float:
        """qemu killed (every process of the guest gone at once, its page cache lost),
        then the same disk booted again; the seconds until it is up again."""
        assert self._qemu is not None
        self._end_master()
        os.killpg(self._qemu.pid, signal.SIGKILL)
        self._qemu.wait(30)
        started = time.monotonic()
        self._start(timeout)
        return time.monotonic() - started

    def _end_master(self) -> None:
        if self._master is not None and self._master.poll() is None:
            self._master.kill()
            self._master.wait(10)
        self._master = None
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "ssh.sock").unlink()

    def shutdown(self, timeout: float = 60) -> None:
        """Power off (qemu killed after timeout), then remove the guest's folder."""
        qemu = self._qemu
        if qemu is not None and qemu.poll() is None:
            if self._master is not None:
                self.run("systemctl poweroff", check=False, timeout=30)
            try:
                qemu.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(qemu.pid, signal.SIGKILL)
                qemu.wait(10)
        self._end_master()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- commands --------------------------------------------------------------------------

    def command(self, cmd: str) -> list[str]:
        """`bash -c cmd` in the guest as root, over the master connection."""
        return [*self._ssh("-o", "ControlMaster=no"), f"{INSIDE} bash -c {shlex.quote(cmd)}"]

    def put(self, local: Path, remote: str) -> None:
        """Copy a file of the machine into the guest."""
        with open(local, "rb") as source:
            subprocess.run(self.command(f"cat > {shlex.quote(remote)}"), stdin=source,
                           check=True, timeout=300)
