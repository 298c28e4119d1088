"""The command line's shared options, and how `install` reuses those of the last install."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from tracardi_systemd.host.commands import PULL_POLICIES, Docker
from tracardi_systemd.host.engine import Engine
from tracardi_systemd.host.runtimes import RUNTIME_HOSTS, ContainerRuntime
from tracardi_systemd.install.manifest import Manifest
from tracardi_systemd.names import (
    DEFAULT_AGENT_PROGRAM,
    DEFAULT_DOCKER,
    DEFAULT_ENV_FILE,
    DEFAULT_METRICS_DIR,
    RUNTIMES,
    is_hook_unit,
)
from tracardi_systemd.spec.limits import DEFAULT_MEMORY_LIMIT_MIB
from tracardi_systemd.spec.secrets import is_secret

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _worker_env(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    env = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: write NAME=VALUE", param_hint="--set")
        if is_secret(name):
            raise click.BadParameter(
                f"{name} looks like a secret: put it in the env file, never on a command line",
                param_hint="--set")
        env[name] = value
    return env


def hook_unit(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not is_hook_unit(value):
        raise click.BadParameter(
            f"{value!r} is not a unit name: give a service or target such as notify.service, "
            "or a template such as notify@.service (it gets the failed unit's name as its "
            "instance)")
    return value


ON_FAILURE_HELP = ("A unit to start when systemd gives up on a worker or on the agent "
                   "(OnFailure=), and when the agent sees systemd give up on a worker; a "
                   "template such as notify@.service gets the failed unit's name as its "
                   "instance (default: none).")
METRICS_DIR_HELP = ("node_exporter's textfile directory: the agent writes tracardi.prom there "
                    "after each cycle that changed something, and nothing while it does not "
                    f"exist (default: {DEFAULT_METRICS_DIR}, Debian's).")


def absolute(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.startswith("/"):
        raise click.BadParameter(f"{value!r} must be an absolute path")
    return value


def fail(message: str, status: int = 1, problems: list[str] | None = None,
         document: dict[str, Any] | None = None) -> NoReturn:
    """The error (and the env file's problems) on stderr; under --json also as one JSON
    document on stdout, {"error", "problems", "exit_status"} and the command's own
    `document` keys, for the scripts that read it."""
    click.echo(f"error: {message}", err=True)
    context = click.get_current_context(silent=True)
    if context is not None and context.params.get("as_json"):
        click.echo(json.dumps({**(document or {}), "error": message,
                               "problems": problems or [], "exit_status": status}))
    sys.exit(status)


def usage_fail(message: str) -> NoReturn:
    """A wrong or missing option: exit 2, as click's own usage errors."""
    fail(message, status=2)


def apply(options: list[Decorator]) -> Decorator:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


env_file_option = click.option(
    "--env-file", type=click.Path(dir_okay=False, path_type=Path), required=True,
    help="The operator's settings file (Tracardi's .env-docker).")

selection_options = apply([
    click.option("--tracardi-version", metavar="VERSION",
                 help="The Tracardi release whose worker catalog to use. Default: the one "
                 "the env file decides (settings only some releases read, or lack of those "
                 "one needs, leave a single release); install also reuses the last install's."),
    click.option("--worker", "workers", multiple=True, metavar="NAME",
                 help="A worker to manage (repeatable; default: every worker of the version; "
                 "'all' selects every worker again after an install of a few)."),
])

network_option = click.option(
    "--network", help="Docker network for the containers, e.g. host (default: Docker's "
    "default bridge, where 127.0.0.1 and localhost are the container itself).")

# Options that shape the unit files, named as RenderSettings names them.
render_options = apply([
    click.option("--runtime", type=click.Choice(RUNTIMES), default="docker",
                 show_default=True,
                 help="docker: services that run `docker run`; podman: Quadlet .container "
                 "files in /etc/containers/systemd (Podman 4.4+). Never guessed from the host."),
    click.option("--image-tag", help="Docker image tag (default: the Tracardi version)."),
    network_option,
    click.option("--replicas", multiple=True, metavar="WORKER=N",
                 help="Run N copies of a worker as a template unit (repeatable)."),
    click.option("--set", "worker_env", multiple=True, metavar="NAME=VALUE", callback=_worker_env,
                 help="A default setting for the workers; the env file overrides it "
                 "(repeatable; SAVE_LOGS=no and LOGGING_LEVEL=info unless set).  Never a secret."),
    click.option("--installed-env-file", default=DEFAULT_ENV_FILE,
                 show_default=True, callback=absolute,
                 help="Where the units read the env file from on the host."),
    click.option("--docker", default=DEFAULT_DOCKER, show_default=True, callback=absolute,
                 help="The docker client the units run."),
    click.option("--stop-timeout", default=10, show_default=True, type=click.IntRange(1),
                 help="Seconds `docker stop` waits before killing a worker."),
    click.option("--agent-interval", default=10, show_default=True, type=click.IntRange(1, 60),
                 help="Seconds between the agent's cycles; its WatchdogSec= is three of them "
                 "(at least 30 s)."),
    click.option("--memory-limit", "memory_limits", multiple=True, metavar="[WORKER=]MIB",
                 help="Memory (MiB, as the kernel counts it for the container) past which the "
                 f"agent restarts a worker: a default for all (default {DEFAULT_MEMORY_LIMIT_MIB})"
                 " or WORKER=MIB (repeatable)."),
    click.option("--liveness/--no-liveness", default=True, show_default=True,
                 help="Give workers that have one (the Celery update worker) a health "
                 "check proving they consume work; the agent restarts a worker it fails. "
                 "Under Docker, a worker the agent watches through its Redis queue gets none "
                 "unless --liveness-interval is given; Podman files always get it; upgrade's "
                 "gate runs it once."),
    click.option("--liveness-interval", type=click.IntRange(1), metavar="SECONDS",
                 help="Seconds between liveness checks (default: the catalog's, 300 for "
                 "the Celery ping); a worker is restarted after the catalog's number of "
                 "failures in a row (2). Given, it adds Docker's health check to workers "
                 "the agent already watches through their Redis queue (a second opinion)."),
    click.option("--agent-program", "tool", callback=absolute,
                 help="The tracardi-systemd program the agent unit runs as root; it must be "
                 f"root-owned (default: {DEFAULT_AGENT_PROGRAM} when present, else this program)."),
    click.option("--metrics-dir", callback=absolute, metavar="DIR",
                 help=METRICS_DIR_HELP + " The agent unit may write there and nowhere else."),
    click.option("--on-failure", metavar="UNIT", callback=hook_unit, help=ON_FAILURE_HELP),
])

def pull_option(default: str, what: str) -> Decorator:
    """--pull as install and upgrade both take it: a policy, `--pull` alone meaning always."""
    return click.option(
        "--pull", type=click.Choice(PULL_POLICIES), default=default, show_default=True,
        is_flag=False, flag_value="always", metavar="[always|missing|never]",
        help=f"always (also `--pull` alone): docker pull every image first; missing: pull "
        f"only the images not on this host; never: {what}.")


def given_options(ctx: click.Context, params: dict[str, Any]) -> set[str]:
    """The options this command line sets, as opposed to those left at their default."""
    return {name for name in params
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT}


def as_flags(command: click.Command, values: dict[str, Any], skip_defaults: bool = False) -> str:
    """Options as they are typed on this command line, ready to paste back:
    `--worker update --worker scheduler --set FOO=bar --no-liveness`."""
    params = {p.name: p for p in command.params if isinstance(p, click.Option)}
    words: list[str] = []
    for name, value in values.items():
        param = params[name]
        if skip_defaults and value == param.default:
            continue
        flag = param.opts[0]
        if param.is_flag and param.secondary_opts:
            words.append(flag if value else param.secondary_opts[0])
        elif isinstance(value, dict):
            words += [f"{flag} {shlex.quote(f'{k}={v}')}" for k, v in value.items()]
        elif isinstance(value, (tuple, list)):
            words += [f"{flag} {shlex.quote(str(item))}" for item in value]
        else:
            words.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(words)


def running_program() -> str:
    """This very program when it was started by path, else the one on $PATH."""
    invoked = sys.argv[0]
    if os.path.basename(invoked) == "tracardi-systemd" and os.path.exists(invoked):
        return os.path.abspath(invoked)
    return shutil.which("tracardi-systemd") or DEFAULT_AGENT_PROGRAM


def runtime_in(options: Mapping[str, object]) -> ContainerRuntime:
    """The runtime install's options name (Docker when they name none)."""
    return RUNTIME_HOSTS.get(str(options.get("runtime", "docker")), RUNTIME_HOSTS["docker"])


def client_in(options: Mapping[str, object]) -> Docker:
    """The client the units of install's options run: podman on Podman, else the docker
    client they were given."""
    return Docker(runtime_in(options).client_or(str(options.get("docker", DEFAULT_DOCKER))))


def client_of(manifest: Manifest | None) -> Docker:
    """The client the installed units run (the last install's options)."""
    return client_in(manifest.options if manifest else {})


def engine_of(manifest: Manifest | None) -> Engine:
    """The Engine API of the installed runtime: dockerd's socket, or podman.socket's."""
    return Engine(runtime_in(manifest.options if manifest else {}).socket)
