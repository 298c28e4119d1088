"""What an operator does on a host (a sandbox or a VM, host.py): write an env file, run the
tool, look around."""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable

from .host import Host
from .releases import selected

TOOL = selected().tool  # the checkout's, in a venv of the booted release's Python
ENV_SOURCE = "/root/env-docker"
INSTALLED_ENV = "/etc/tracardi/.env-docker"
LICENSE = "LIC-e2e-7f3a9c-do-not-leak-31337"
ELASTIC_PASSWORD = "pw-e2e-elastic-4b1d-do-not-leak"
WORKER_UNITS = [
    "tracardi-update.service",
    "tracardi-segmentation.service",
    "tracardi-scheduler.service",
    "tracardi-post-collection.service",
    "tracardi-trigger.service",
]
WORKER_NAMES = sorted(unit.removesuffix(".service") for unit in WORKER_UNITS)  # containers'
BASE_SETTINGS = {
    "ELASTIC_HOST": "http://127.0.0.1:9200",
    "ELASTIC_HTTP_AUTH_USERNAME": "elastic",
    "ELASTIC_HTTP_AUTH_PASSWORD": ELASTIC_PASSWORD,
    "REDIS_HOST": "127.0.0.1",
    "LOGGING_LEVEL": "INFO",
    "API_LICENSE": LICENSE,
}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_env(host: Host, path: str = ENV_SOURCE, **settings: str) -> None:
    values = BASE_SETTINGS | settings
    text = "".join(f"{k}={v}\n" for k, v in values.items() if v is not None)
    host.run(f"install -m 600 /dev/null {path} && cat > {path}", input=text)


def tool(host: Host, args: str, check: bool = True, timeout: float = 120):
    return host.run(f"{host.tool} {args}", check=check, timeout=timeout)


def install(host: Host, extra: str = "", check: bool = True):
    return tool(host, f"install --env-file {ENV_SOURCE} --network host {extra}", check=check)


def uninstall_everything(host: Host, engine: str = "docker") -> None:
    """Leave the host as the session found it, whatever a test did. `engine`: the client
    of the containers' engine (docker or podman; every helper here takes it so)."""
    tool(host, "uninstall --purge", check=False)
    host.run(
        "systemctl reset-failed 'tracardi-*' 2>/dev/null; "
        f"ids=$({engine} ps -aq --filter label=tracardi.managed=true); "
        f'[ -z "$ids" ] || {engine} rm -f $ids >/dev/null',
        check=False,
    )


def container(host: Host, name: str, engine: str = "docker") -> dict | None:
    result = host.run(f"{engine} inspect --type container {shlex.quote(name)}", check=False)
    return json.loads(result.stdout)[0] if result.returncode == 0 else None


def wait_running(host: Host, name: str, timeout: float = 30, other_than: str = "",
                 engine: str = "docker") -> str:
    """Wait until container `name` keeps running (a new one when `other_than` is its old id).

    Running means the same container is up in two looks half a second apart: a stand-in
    told to fail is up for a few milliseconds before it exits.
    """
    look = f"{engine} inspect -f '{{{{if .State.Running}}}}{{{{.Id}}}}{{{{end}}}}' {name}"
    return host.wait_until(
        f"a=$({look}) && sleep 0.5 && b=$({look}) && [ -n \"$a\" ] && [ \"$a\" = \"$b\" ] "
        f"&& [ \"$a\" != '{other_than}' ] && echo $a",
        timeout=timeout,
    ).strip()


def journal(host: Host, *args: str) -> str:
    return host.run("journalctl --no-pager -o cat " + " ".join(args)).stdout


# What the tests assert of the journal, a unit or a container, they wait for (host.wait_until,
# with a deadline): journald writes an entry, systemd settles a unit, dockerd removes a
# container a moment after the step that caused it, later on a busy machine.

def wait_journal(host: Host, text: str, *args: str, timeout: float = 30) -> str:
    """`journalctl -o cat ARGS` once it holds `text`."""
    return host.wait_until(
        f"out=$(journalctl --no-pager -o cat {' '.join(args)}) && "
        f"grep -qF -- {shlex.quote(text)} <<<\"$out\" && printf '%s\\n' \"$out\"",
        timeout=timeout,
    )


def wait_entries(host: Host, *matches: str, timeout: float = 30) -> list[dict]:
    """The journal's entries that `matches` select (FIELD=value, --since @T, ...), once
    there is one."""
    out = host.wait_until(f"journalctl -q -o json {' '.join(matches)} | grep .", timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_unit(host: Host, unit: str, timeout: float = 30, **state: str) -> None:
    """Until `systemctl show` gives each property its value: wait_unit(h, u, Result="success")."""
    host.wait_until(" && ".join(
        f"[ \"$(systemctl show -p {name} --value {unit})\" = {shlex.quote(value)} ]"
        for name, value in state.items()), timeout=timeout)


def wait_running_tag(host: Host, tag: str, timeout: float = 30, engine: str = "docker") -> None:
    """Until every worker unit is active with a running container of image tag `tag`."""
    for unit in WORKER_UNITS:
        host.wait_until(f"systemctl is-active -q {unit} && {engine} inspect -f "
                        f"'{{{{.State.Running}}}} {{{{.Config.Image}}}}' "
                        f"{unit.removesuffix('.service')} | grep -qx 'true .*:{tag}'",
                        timeout=timeout)


def wait_no_labelled_container(host: Host, timeout: float = 30, engine: str = "docker") -> None:
    """Until no container carries the tool's label."""
    host.wait_until(f"[ -z \"$({engine} ps -aq --filter label=tracardi.managed=true)\" ]",
                    timeout=timeout)


def wait_labelled_containers(host: Host, names: Iterable[str], timeout: float = 30,
                             engine: str = "docker") -> None:
    """Until the containers that carry the tool's label are `names`, and no other."""
    host.wait_until(f"[ \"$({engine} ps -a --filter label=tracardi.managed=true --format "
                    "'{{.Names}}' | LC_ALL=C sort | xargs)\" = "
                    f"'{' '.join(sorted(names))}' ]", timeout=timeout)


def wait_gone(host: Host, name: str, timeout: float = 30) -> None:
    """Until there is no container `name`."""
    host.wait_until(f"! docker inspect --type container {shlex.quote(name)} >/dev/null 2>&1",
                    timeout=timeout)


def start_all(host: Host, engine: str = "docker", timeout: float = 30) -> dict[str, str]:
    """Start tracardi.target; the running container id of each worker unit."""
    host.run("systemctl start tracardi.target")
    return {unit: wait_running(host, unit.removesuffix(".service"), timeout, engine=engine)
            for unit in WORKER_UNITS}
