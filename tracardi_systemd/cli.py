"""The `tracardi-systemd` command line: options in, library calls, messages out."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from tracardi_systemd import __version__
from tracardi_systemd.catalog import DEFAULT_VERSION, CatalogError, select_workers, workers_for
from tracardi_systemd.envfile import EnvFile, load_env_file
from tracardi_systemd.escape import UnsafeValue
from tracardi_systemd.files import write_atomic
from tracardi_systemd.problems import Problem, Severity, has_errors
from tracardi_systemd.render import (
    DEFAULT_DOCKER,
    DEFAULT_ENV_FILE,
    DEFAULT_TOOL,
    RenderSettings,
    render,
)
from tracardi_systemd.secrets import is_secret
from tracardi_systemd.validate import validate


def default_tool_path() -> str:
    """The path the agent unit runs: this very program when it was started by path."""
    invoked = sys.argv[0]
    if os.path.basename(invoked) == "tracardi-systemd" and os.path.exists(invoked):
        return os.path.abspath(invoked)
    return shutil.which("tracardi-systemd") or DEFAULT_TOOL


def _pairs(option: str, values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: write NAME=VALUE", param_hint=option)
        pairs[name] = value
    return pairs


def _replicas(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    counts = {}
    for name, count in _pairs("--replicas", values).items():
        if not count.isdigit():
            raise click.BadParameter(f"{name}={count}: N must be a number", param_hint="--replicas")
        counts[name.removeprefix("tracardi-")] = int(count)
    return counts


def _worker_env(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    env = _pairs("--set", values)
    for name in env:
        if is_secret(name):
            raise click.BadParameter(
                f"{name} looks like a secret: put it in the env file, never on a command line",
                param_hint="--set",
            )
    return env


env_file_option = click.option(
    "--env-file", type=click.Path(dir_okay=False, path_type=Path), required=True,
    help="The operator's settings file (Tracardi's .env-docker).",
)


def selection_options(command):
    """--worker and --tracardi-version, shared by every command that picks workers."""
    command = click.option(
        "--worker", "workers", multiple=True, metavar="NAME",
        help="A worker to manage (repeatable; default: every worker of the version).",
    )(command)
    return click.option(
        "--tracardi-version", default=DEFAULT_VERSION, show_default=True,
        help="The Tracardi release whose worker catalog to use.",
    )(command)


def render_options(command):
    """The options that shape the unit files, shared by `render` and `install`."""
    options = [
        click.option("--image-tag", help="Docker image tag (default: the Tracardi version)."),
        click.option("--network", help="Docker network for the containers, e.g. host "
                     "(default: Docker's default bridge)."),
        click.option("--replicas", multiple=True, metavar="WORKER=N", callback=_replicas,
                     help="Run N copies of a worker as a template unit (repeatable)."),
        click.option("--set", "worker_env", multiple=True, metavar="NAME=VALUE",
                     callback=_worker_env,
                     help="A default setting for the workers; the env file overrides it "
                     "(repeatable; SAVE_LOGS=no is always set).  Never a secret."),
        click.option("--installed-env-file", default=DEFAULT_ENV_FILE, show_default=True,
                     help="Where the units read the env file from on the host."),
        click.option("--docker", "docker_path", default=DEFAULT_DOCKER, show_default=True,
                     help="The docker client the units run."),
        click.option("--stop-timeout", default=10, show_default=True, type=click.IntRange(1),
                     help="Seconds `docker stop` waits before killing a worker."),
    ]
    for option in reversed(options):
        command = option(command)
    return selection_options(command)


@dataclass
class Loaded:
    env: EnvFile
    settings: RenderSettings
    problems: list[Problem]


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def load_and_validate(env_path: Path, tracardi_version: str, workers: tuple[str, ...],
                      **render_kwargs) -> Loaded:
    """Read and check the env file; print its problems; stop on errors."""
    try:
        selected = select_workers(tracardi_version, workers)
    except CatalogError as exc:
        _fail(str(exc))
    env = load_env_file(env_path)
    problems = validate(env, selected)
    for problem in problems:
        click.echo(str(problem), err=True)
    if has_errors(problems):
        count = sum(p.severity is Severity.ERROR for p in problems)
        _fail(f"{env_path}: {count} error(s); fix them and run again")
    settings = RenderSettings(
        version=tracardi_version,
        workers=selected,
        env_keys=tuple(env.values),
        **render_kwargs,
    )
    return Loaded(env, settings, problems)


def render_kwargs(image_tag, network, replicas, worker_env, installed_env_file, docker_path,
                  stop_timeout) -> dict:
    return {
        "image_tag": image_tag,
        "network": network,
        "replicas": replicas,
        "worker_env": worker_env,
        "env_file": installed_env_file,
        "docker": docker_path,
        "stop_timeout": stop_timeout,
    }


def render_files(loaded: Loaded) -> dict[str, str]:
    try:
        return render(loaded.settings)
    except UnsafeValue as exc:
        _fail(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracardi-systemd")
def main() -> None:
    """Run Tracardi's background workers as supervised systemd services.

    \b
    Typical use on a worker host:
      tracardi-systemd check --env-file ./.env-docker
      sudo tracardi-systemd install --env-file ./.env-docker
      systemctl start tracardi.target
      tracardi-systemd status
    """


@main.command()
@click.option("--tracardi-version", default=DEFAULT_VERSION, show_default=True,
              help="The Tracardi release whose workers to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def workers(tracardi_version: str, as_json: bool) -> None:
    """List the workers of a Tracardi release: unit, image, settings they need."""
    try:
        rows = workers_for(tracardi_version)
    except CatalogError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps([
            {"name": w.name, "unit": f"{w.unit}.service", "image": w.image,
             "description": w.description, "needs": list(w.needs), "commercial": w.commercial}
            for w in rows
        ], indent=2))
        return
    table = [("UNIT", "IMAGE", "NEEDS", "COMMERCIAL")] + [
        (w.unit, w.image, ",".join(w.needs) + (",license" if w.commercial else ""),
         "yes" if w.commercial else "no")
        for w in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


@main.command()
@env_file_option
@selection_options
def check(env_file: Path, tracardi_version: str, workers: tuple[str, ...]) -> None:
    """Validate an env file for the selected workers.

    Prints every problem with its file and line; secret values are never shown. Exits 0
    when the file is fine (warnings may still be printed) and 1 on any error.
    """
    loaded = load_and_validate(env_file, tracardi_version, workers)
    names = ", ".join(w.unit for w in loaded.settings.workers)
    click.echo(f"{env_file}: ok for {names}")


@main.command(name="render")
@env_file_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write the unit files into (created if missing).")
@render_options
def render_command(env_file: Path, out: Path, tracardi_version: str, workers: tuple[str, ...],
                   **options) -> None:
    """Render the unit files into a directory, without installing anything.

    Writes one tracardi-<worker>.service per worker (a tracardi-<worker>@.service template
    when it has replicas), tracardi.target and tracardi-agent.service.
    """
    loaded = load_and_validate(env_file, tracardi_version, workers,
                               tool=default_tool_path(), **render_kwargs(**options))
    files = render_files(loaded)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(files.items()):
        write_atomic(out / name, text.encode())
        click.echo(str(out / name))
