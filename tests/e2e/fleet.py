"""A fleet of sandbox hosts driven by the project's Ansible role, without SSH or a network:
Ansible reaches each host through the `sandbox` connection plugin (connection_plugins/).

The tool on the hosts is the checkout's venv, which every sandbox sees at the same path
(the role's install method `present`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .conftest import start_redis
from .operator import BASE_SETTINGS, TOOL
from .sandbox import CHECKOUT, Sandbox
from .standin import build_standin_images

ANSIBLE_DIR = CHECKOUT / "ansible"
PLAYBOOK = CHECKOUT / ".venv" / "bin" / "ansible-playbook"
PLUGINS = Path(__file__).resolve().parent / "connection_plugins"
NEW_TAG = "0.8.2"

ROLE_VARS = {
    "tracardi_systemd_install_method": "present",
    "tracardi_systemd_program": TOOL,
    "tracardi_systemd_env": BASE_SETTINGS,
    "tracardi_systemd_install_args": ["--network", "host"],
    "tracardi_systemd_health_retries": 60,
    "tracardi_systemd_health_delay": 1,
    "tracardi_systemd_upgrade_window": 2,
    "tracardi_systemd_upgrade_pull": "missing",  # no registry: the stand-ins are there
    "tracardi_systemd_upgrade_args": ["--liveness-timeout", "15"],
}


def _prepare_host(crash_new_tag: bool) -> Sandbox:
    host = Sandbox.boot()
    try:
        build_standin_images(host)
        build_standin_images(host, tag=NEW_TAG, crash=crash_new_tag)
        start_redis(host)
        host.run("systemd-run -q --unit=fake-elasticsearch /usr/bin/python3 -m http.server "
                 "9200 --bind 127.0.0.1")
    except BaseException:
        host.shutdown()
        raise
    return host


@contextlib.contextmanager
def booted_fleet(names: list[str], crash_new_tag_on: str = "") -> Iterator[dict[str, Sandbox]]:
    """Hosts booted side by side, each with the stand-ins of 0.8.1 and NEW_TAG (which
    crash-loops on `crash_new_tag_on`), Redis and a listener as Elasticsearch."""
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {name: pool.submit(_prepare_host, name == crash_new_tag_on)
                   for name in names}
    hosts: dict[str, Sandbox] = {}
    try:
        errors = []
        for name, future in futures.items():
            try:
                hosts[name] = future.result()
            except Exception as exc:  # the others still need their shutdown
                errors.append(exc)
        if errors:
            raise errors[0]
        yield hosts
    finally:
        for host in hosts.values():
            host.shutdown()


def write_inventory(directory: Path, hosts: dict[str, Sandbox]) -> Path:
    """A YAML (JSON) inventory: group tracardi_workers, each host by its sandbox's PID 1."""
    inventory = {"tracardi_workers": {
        "hosts": {name: {"ansible_connection": "sandbox", "ansible_sandbox_pid": host.pid,
                         "ansible_python_interpreter": "/usr/bin/python3"}
                  for name, host in hosts.items()},
        "vars": ROLE_VARS,
    }}
    path = directory / "inventory.yml"
    path.write_text(json.dumps(inventory, indent=2))
    return path


def playbook(name: str, inventory: Path, *args: str,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{PLAYBOOK.parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(inventory.parent),
        "LANG": "C.UTF-8",
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_CONNECTION_PLUGINS": str(PLUGINS),
        "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles"),
        "ANSIBLE_LOCAL_TEMP": str(inventory.parent / "ansible-local"),
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_FORKS": "5",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    argv = [str(PLAYBOOK), "-i", str(inventory), str(ANSIBLE_DIR / name), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=inventory.parent, check=False)


_RECAP = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.M)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP of ansible-playbook's output: {host: {"ok": 9, "changed": 0, ...}}."""
    tail = output.rsplit("PLAY RECAP", 1)[-1]
    return {host: {k: int(v) for k, v in (pair.split("=") for pair in counts.split())}
            for host, counts in _RECAP.findall(tail)}


def worker_images(host: Sandbox) -> dict[str, str]:
    """{container name: image tag} of the running managed containers."""
    out = host.run("docker ps --filter label=tracardi.managed=true "
                   "--format '{{.Names}} {{.Image}}'").stdout
    return {name: image.rsplit(":", 1)[1]
            for name, image in (line.split() for line in out.splitlines())}


def container_ids(host: Sandbox) -> str:
    return host.run("docker ps -q --no-trunc --filter label=tracardi.managed=true | sort").stdout


def ansible_available() -> bool:
    return PLAYBOOK.exists() and os.access(PLAYBOOK, os.X_OK)
