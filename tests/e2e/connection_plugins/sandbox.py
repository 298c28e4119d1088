"""Ansible connection plugin `sandbox`: reach a tests/e2e sandbox host without SSH or a
network. Commands run inside the namespaces of the sandbox's PID 1 (nsenter, as
Sandbox.run does); files go in and out through /proc/<pid>/root."""

from __future__ import annotations

import shutil
import subprocess

from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: sandbox
short_description: run tasks inside a tests/e2e sandbox host
description:
  - Enters the mount, PID, network and cgroup namespaces and the root of the sandbox's
    systemd with nsenter; copies files through /proc/PID/root.
author: tracardi-systemd
options:
  sandbox_pid:
    description: PID of the sandbox's systemd as the machine sees it.
    required: true
    vars:
      - name: ansible_sandbox_pid
"""

# Like tests/e2e/sandbox.INSIDE_ENV: the environment of a command inside, not the runner's.
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


class Connection(ConnectionBase):
    transport = "sandbox"
    has_pipelining = True

    def _connect(self) -> Connection:
        self._connected = True
        return self

    @property
    def _pid(self) -> str:
        return str(self.get_option("sandbox_pid"))

    def exec_command(self, cmd: str, in_data: bytes | None = None,
                     sudoable: bool = True) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        argv = ["nsenter", "-t", self._pid, "-m", "-p", "-r", "-w", "-n", "-C",
                "/bin/sh", "-c", cmd]
        proc = subprocess.run(argv, input=in_data, capture_output=True, env=INSIDE_ENV,
                              check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def _inside(self, path: str) -> str:
        return f"/proc/{self._pid}/root/{path.lstrip('/')}"

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        shutil.copyfile(in_path, self._inside(out_path))

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        shutil.copyfile(self._inside(in_path), out_path)

    def close(self) -> None:
        self._connected = False
