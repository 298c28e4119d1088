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
from tracardi_systemd.host import CommandError, Docker, Systemctl, systemd_is_running
from tracardi_systemd.install import (
    InstallRequest,
    apply_files,
    manifest_for,
    plan_install,
    units_no_longer_wanted,
)
from tracardi_systemd.manifest import (
    Manifest,
    ManifestError,
    load_manifest,
    manifest_path,
    save_manifest,
)
from tracardi_systemd.problems import Problem, Severity, has_errors
from tracardi_systemd.render import (
    AGENT_UNIT,
    DEFAULT_DOCKER,
    DEFAULT_ENV_FILE,
    DEFAULT_TOOL,
    TARGET,
    RenderSettings,
    render,
    worker_units,
)
from tracardi_systemd.secrets import is_secret
from tracardi_systemd.table import columns
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


DEFAULT_MEMORY_LIMIT_MIB = 2048


def _memory_limits(ctx: click.Context, param: click.Parameter,
                   values: tuple[str, ...]) -> tuple[str, ...]:
    """Check each `[WORKER=]MIB`; keep them as text for the agent's command line."""
    for value in values:
        mib = value.partition("=")[2] if "=" in value else value
        if not mib.isdigit() or int(mib) < 16:
            raise click.BadParameter(f"{value!r}: write MIB or WORKER=MIB, at least 16 MiB",
                                     param_hint="--memory-limit")
    return values


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
        click.option("--agent-interval", default=10, show_default=True,
                     type=click.IntRange(1, 60), help="Seconds between the agent's cycles."),
        click.option("--memory-limit", "memory_limits", multiple=True,
                     metavar="[WORKER=]MIB", callback=_memory_limits,
                     help="Memory (MiB) past which the agent restarts a worker: a default "
                     f"for all (default {DEFAULT_MEMORY_LIMIT_MIB}) or WORKER=MIB (repeatable)."),
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
                  stop_timeout, agent_interval, memory_limits) -> dict:
    agent_args = ["--interval", str(agent_interval), "--docker", docker_path]
    for limit in memory_limits:
        agent_args += ["--memory-limit", limit]
    return {
        "agent_args": tuple(agent_args),
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
    click.echo(columns(table))


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


def _require_root(action: str) -> None:
    if os.geteuid() != 0:
        _fail(f"{action} changes the system and needs root: run it with sudo "
              "(or use --root DIR to prepare an offline root)")


def _require_live_host(docker_path: str) -> None:
    if not systemd_is_running():
        _fail("systemd is not running on this host (no /run/systemd/system): install needs a "
              "running systemd, or use --root DIR to prepare an offline root")
    if not Path(docker_path).exists():
        _fail(f"the docker client {docker_path} is missing: install Docker "
              "(apt-get install docker.io) or pass --docker PATH")


root_option = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path),
    help="Work on an offline root directory (an image being built), like systemctl --root: "
    "no systemctl call touches the live system.",
)


@main.command()
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The operator's settings file; it is copied to --installed-env-file "
              "(root-owned, mode 0600). Default: the installed env file itself.")
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True,
              type=click.Path(path_type=Path), help="Where to write the unit files.")
@root_option
@click.option("--no-enable", is_flag=True, help="Write the units but do not enable them.")
@click.option("--start", is_flag=True, help="Start the workers and the agent afterwards.")
@click.option("--pull", is_flag=True, help="Pull the worker images first (docker pull).")
@click.option("--dry-run", is_flag=True, help="Show what would change, as a diff; write nothing.")
@click.option("--force", is_flag=True,
              help="Replace unit files the tool did not write or that were edited.")
@render_options
def install(env_file: Path | None, unit_dir: Path, root: Path | None, no_enable: bool,
            start: bool, pull: bool, dry_run: bool, force: bool, tracardi_version: str,
            workers: tuple[str, ...], **options) -> None:
    """Validate, render and install the worker units, then enable them.

    Nothing on disk changes when the env file has an error or a unit file would be
    overwritten that the tool did not write (unless --force). Running it again with the
    same inputs changes nothing and says so. Drop-ins (*.service.d/) are never touched.
    """
    if not unit_dir.is_absolute():
        raise click.BadParameter(f"{unit_dir} must be an absolute path", param_hint="--unit-dir")
    kwargs = render_kwargs(**options)
    env_target = Path(kwargs["env_file"])
    live = root is None
    if live and not dry_run:
        _require_root("install")
        _require_live_host(kwargs["docker"])
    target_root = root or Path("/")
    env_source = env_file or target_root / env_target.relative_to("/")
    loaded = load_and_validate(env_source, tracardi_version, workers, tool=default_tool_path(),
                               **kwargs)
    files = render_files(loaded)
    units = [TARGET, AGENT_UNIT, *(i for u in worker_units(loaded.settings) for i in u.instances)]
    try:
        previous = load_manifest(target_root)
    except ManifestError as exc:
        _fail(str(exc))
    request = InstallRequest(
        root=target_root, unit_dir=unit_dir, env_source=env_source, env_target=env_target,
        rendered=files, units=units, force=force,
    )
    plan = plan_install(request, previous)
    if plan.refusals:
        for refusal in plan.refusals:
            click.echo(f"{unit_dir}/{refusal}", err=True)
        _fail("refused to overwrite the files above; nothing was changed")
    if dry_run:
        lines = plan.describe(with_diff=True)
        click.echo("\n".join(lines) if lines else "nothing to change")
        return
    docker = Docker(kwargs["docker"])
    systemctl = Systemctl(root)
    try:
        if pull:
            for worker in loaded.settings.workers:
                docker.pull(f"{worker.image}:{loaded.settings.tag}")
        stale = units_no_longer_wanted(previous, units)
        if stale:
            systemctl.disable(stale, now=live)
        apply_files(plan, request.on_disk(unit_dir))
        manifest = manifest_for(
            plan, unit_dir=str(unit_dir), env_file=str(env_target),
            tracardi_version=tracardi_version, workers=[w.name for w in loaded.settings.workers],
            units=units, options={k: v for k, v in options.items() if v not in (None, (), {})},
        )
        if previous is None or manifest.to_json() != previous.to_json():
            save_manifest(target_root, manifest)
        if plan.nothing_to_change:
            click.echo("nothing to change")
        else:
            click.echo("\n".join(plan.describe(with_diff=False)))
            systemctl.daemon_reload()
            if live:
                click.echo("workers already running keep their old settings until restarted: "
                           "systemctl restart tracardi.target")
        if not no_enable:
            systemctl.enable(units)
        if start:
            systemctl.start(units)
    except CommandError as exc:
        _fail(str(exc))


@main.command()
@click.option("--purge", is_flag=True, help="Also remove the installed env file.")
@root_option
def uninstall(purge: bool, root: Path | None) -> None:
    """Stop, disable and remove what install wrote (never operator drop-ins).

    The installed env file is kept unless --purge is given.
    """
    live = root is None
    if live:
        _require_root("uninstall")
    target_root = root or Path("/")
    try:
        manifest = load_manifest(target_root)
    except ManifestError as exc:
        _fail(str(exc))
    if manifest is None:
        click.echo("nothing to uninstall: tracardi-systemd has installed nothing here")
        return
    systemctl = Systemctl(root)
    try:
        systemctl.disable(manifest.units, now=True)
    except CommandError as exc:
        click.echo(f"warning: {exc}", err=True)
    unit_dir = target_root / Path(manifest.unit_dir).relative_to("/")
    for name in sorted(manifest.files):
        (unit_dir / name).unlink(missing_ok=True)
        click.echo(f"removed {unit_dir / name}")
    env_file = target_root / Path(manifest.env_file).relative_to("/")
    if purge:
        env_file.unlink(missing_ok=True)
        click.echo(f"removed {env_file}")
    else:
        click.echo(f"kept {env_file} (use --purge to remove it)")
    manifest_path(target_root).unlink()
    try:
        systemctl.daemon_reload()
        if live:
            systemctl("reset-failed", *manifest.units)
    except CommandError as exc:
        click.echo(f"warning: {exc}", err=True)


def _installed_manifest() -> Manifest:
    try:
        manifest = load_manifest(Path("/"))
    except ManifestError as exc:
        _fail(str(exc))
    if manifest is None:
        _fail("nothing is installed: run  sudo tracardi-systemd install --env-file FILE")
    return manifest


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--docker", "docker_path", default=DEFAULT_DOCKER, show_default=True,
              help="The docker client to ask.")
def status(as_json: bool, docker_path: str) -> None:
    """Show each installed worker: unit and container state, uptime, restarts, memory.

    Also shows the agent and its view of each worker. Exits 0 when every worker unit is
    active with its container running and the agent is running, 1 otherwise.
    """
    from tracardi_systemd.status import collect, format_table  # psutil: only when needed

    manifest = _installed_manifest()
    try:
        report = collect(manifest, Systemctl(), Docker(docker_path))
    except CommandError as exc:
        _fail(str(exc))
    click.echo(report.to_json() if as_json else format_table(report))
    sys.exit(0 if report.healthy else 1)


@main.command()
@click.option("--username", help="Registry user (default: TRACARDI_REGISTRY_USER from the "
              "env file).")
@click.option("--registry", help="Registry host (default: Docker Hub).")
@click.option("--token-file", type=click.File("r"),
              help="Read the token from this file ('-' for standard input).")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_ENV_FILE, show_default=True,
              help="Env file that may hold TRACARDI_REGISTRY_USER / TRACARDI_REGISTRY_TOKEN.")
@click.option("--docker", "docker_path", default=DEFAULT_DOCKER, show_default=True,
              help="The docker client to log in with.")
def login(username: str | None, registry: str | None, token_file, env_file: Path,
          docker_path: str) -> None:
    """Log Docker in to the registry of the commercial worker images.

    The token comes from --token-file, else TRACARDI_REGISTRY_TOKEN in the env file, else
    standard input (asked for without echo on a terminal). It reaches docker through
    --password-stdin: never on a command line, never printed.
    """
    settings = load_env_file(env_file).values if env_file.exists() else {}
    username = username or settings.get("TRACARDI_REGISTRY_USER")
    if not username:
        raise click.UsageError("no user: pass --username or set TRACARDI_REGISTRY_USER "
                               f"in {env_file}")
    if token_file is not None:
        token = token_file.read()
    elif settings.get("TRACARDI_REGISTRY_TOKEN"):
        token = settings["TRACARDI_REGISTRY_TOKEN"]
    elif sys.stdin.isatty():
        token = click.prompt("Registry token", hide_input=True)
    else:
        token = sys.stdin.read()
    token = token.strip()
    if not token:
        _fail("the registry token is empty")
    try:
        Docker(docker_path).login(registry, username, token)
    except CommandError as exc:
        _fail(str(exc).replace(token, "<token>"))
    click.echo(f"logged in to {registry or 'Docker Hub'} as {username}")


@main.command()
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_ENV_FILE, show_default=True,
              help="Where to read REDIS_HOST, REDIS_PORT and ELASTIC_HOST from.")
@click.option("--once", is_flag=True, help="Run one cycle, print what it saw and did, exit.")
@click.option("--dry-run", is_flag=True, help="With --once: decide but do nothing.")
@click.option("--interval", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between cycles.")
@click.option("--backoff-initial", default=10.0, show_default=True, type=click.FloatRange(0),
              help="First delay (s) before re-arming a unit systemd gave up on; doubles.")
@click.option("--backoff-max", default=300.0, show_default=True, type=click.FloatRange(0),
              help="Cap (s) of the re-arm delay.")
@click.option("--stable-after", default=300.0, show_default=True, type=click.FloatRange(0),
              help="Seconds of running that reset the backoff.")
@click.option("--grace", default=15.0, show_default=True, type=click.FloatRange(0),
              help="Seconds an active unit's container may be missing before a restart.")
@click.option("--memory-limit", "memory_limits", multiple=True, metavar="[WORKER=]MIB",
              callback=_memory_limits,
              help=f"Restart a worker above this memory (default {DEFAULT_MEMORY_LIMIT_MIB} MiB).")
@click.option("--memory-cycles", default=3, show_default=True, type=click.IntRange(1),
              help="Consecutive cycles over the limit before the restart.")
@click.option("--docker", "docker_path", default=DEFAULT_DOCKER, show_default=True,
              help="The docker client to use.")
def agent(env_file: Path, once: bool, dry_run: bool, interval: float, backoff_initial: float,
          backoff_max: float, stable_after: float, grace: float, memory_limits: tuple[str, ...],
          memory_cycles: int, docker_path: str) -> None:
    """The watchdog agent (run by tracardi-agent.service, Type=notify).

    Each cycle it reads every installed unit and every labelled container, then re-arms
    units systemd gave up on (with exponential backoff), restarts units whose container is
    gone or over its memory limit, removes orphan containers, and holds restarts while
    Redis or Elasticsearch is unreachable. Every action is a structured journal entry.
    """
    # Imported here, not at the top: they load psutil and sdnotify, which every other
    # command (and --help) would otherwise pay for at start-up.
    from tracardi_systemd.agent import Agent, describe_cycle, stop_on_signals
    from tracardi_systemd.dependencies import probe
    from tracardi_systemd.journal import Journal
    from tracardi_systemd.policy import Config

    if dry_run and not once:
        raise click.UsageError("--dry-run needs --once")
    manifest = _installed_manifest()
    values = load_env_file(env_file).values
    default_mib, per_worker = DEFAULT_MEMORY_LIMIT_MIB, {}
    for limit in memory_limits:
        name, _, mib = limit.rpartition("=")
        if name:
            per_worker[name.removeprefix("tracardi-")] = int(mib) * 2**20
        else:
            default_mib = int(mib)
    config = Config(backoff_initial=backoff_initial, backoff_max=backoff_max,
                    stable_after=stable_after, grace=grace, memory_limits=per_worker,
                    default_memory_limit=default_mib * 2**20, memory_cycles=memory_cycles)
    watchdog = Agent(manifest, Systemctl(), Docker(docker_path),
                     lambda wanted: probe(values, wanted), Journal(), config)
    if not once:
        watchdog.run(interval, stop_on_signals())
        return
    try:
        observation, decision = watchdog.cycle(dry_run=dry_run)
    except CommandError as exc:
        _fail(str(exc))
    click.echo(describe_cycle(observation, decision, dry_run))
