"""What the e2e tests drive: a booted Debian host, as a namespace sandbox (sandbox.py) or a
qemu VM (guest.py). operator.py's steps take either."""

from __future__ import annotations

import os
import signal
import subprocess
import time


class HostError(RuntimeError):
    pass


class Host:
    """A host that runs shell commands as root; `tool` is the tracardi-systemd it runs."""

    Error: type[HostError] = HostError
    tool: str
    # How many times longer than in the sandbox a command or a wait may take here: the VM
    # tier's guests run under software emulation. It stretches the timeouts of run and
    # wait_until, never a bound a test asserts.
    slowness: float = 1.0

    env: dict[str, str] | None = None  # of the command that enters the host

    def command(self, cmd: str) -> list[str]:
        """The argv that runs `bash -c cmd` inside, as root."""
        raise NotImplementedError

    def run(
        self,
        cmd: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run `bash -c cmd` inside; an error unless it exits 0 (with check) within timeout."""
        timeout *= self.slowness
        argv = self.command(cmd)
        with subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            start_new_session=True,  # so a timeout kills what the entering command started
        ) as proc:
            try:
                stdout, stderr = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate(timeout=10)
                raise self.Error(
                    f"timed out after {timeout:.0f} s: {cmd}\n"
                    f"--- stdout:\n{stdout}--- stderr:\n{stderr}"
                ) from None
        result = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
        if check and result.returncode != 0:
            raise self.Error(
                f"exit status {result.returncode}: {cmd}\n"
                f"--- stdout:\n{stdout}--- stderr:\n{stderr}"
            )
        return result

    def wait_until(self, cmd: str, timeout: float = 30) -> str:
        """Run cmd inside until it succeeds; its stdout, or an error with its last output."""
        deadline = time.monotonic() + timeout * self.slowness
        while True:
            result = self.run(cmd, check=False, timeout=timeout)
            if result.returncode == 0:
                return result.stdout
            if time.monotonic() > deadline:
                raise self.Error(
                    f"still failing after {timeout * self.slowness:.0f} s: {cmd}\n"
                    f"--- stdout:\n{result.stdout}--- stderr:\n{result.stderr}"
                )
            time.sleep(0.2)
