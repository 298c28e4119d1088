"""The commands that run beside the installation: `agent` (what tracardi-agent.service
runs) and `login` (docker login for the commercial images)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tracardi_systemd.cli.options import (
    METRICS_DIR_HELP,
    ON_FAILURE_HELP,
    absolute,
    fail,
    hook_unit,
)
from tracardi_systemd.host.commands import CommandError, Docker, Systemctl
from tracardi_systemd.install.manifest import manifest_path
from tracardi_systemd.names import DEFAULT_DOCKER, DEFAULT_ENV_FILE, DEFAULT_METRICS_DIR, RUNTIMES
from tracardi_systemd.spec.envfile import load_env_file
from tracardi_systemd.spec.limits import LimitError, parse_memory_limits

if TYPE_CHECKING:
    from tracardi_systemd.agent.policy import Config


@click.command()
@click.option("--username", help="Registry user (default: TRACARDI_REGISTRY_USER from the "
              "env file).")
@click.option("--registry", help="Registry host (default: Docker Hub).")
@click.option("--token-file", type=click.File("r"),
              help="Read the token from this file ('-' for standard input).")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_ENV_FILE, show_default=True,
              help="Env file that may hold TRACARDI_REGISTRY_USER / TRACARDI_REGISTRY_TOKEN.")
@click.option("--docker", default=DEFAULT_DOCKER, show_default=True,
              help="The docker client to log in with.")
def login(username: str | None, registry: str | None, token_file, env_file: Path,
          docker: str) -> None:
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
        fail("the registry token is empty")
    try:
        Docker(docker).login(registry, username, token)
    except CommandError as exc:
        fail(str(exc).replace(token, "<token>"))
    click.echo(f"logged in to {registry or 'Docker Hub'} as {username}")


@click.command()
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_ENV_FILE, show_default=True,
              help="Where to read the workers' settings (Redis, Elasticsearch) from.")
@click.option("--once", is_flag=True, help="Run one cycle, print what it saw and did, exit.")
@click.option("--dry-run", is_flag=True, help="With --once: decide but do nothing.")
@click.option("--interval", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between ticks (memory, dependencies, Docker's containers); a "
              "Docker event wakes the agent at once.")
@click.option("--reconcile-every", default=60.0, show_default=True, type=click.FloatRange(1),
              help="Seconds between full reconciles with systemd while nothing happens "
              "(every tick while a worker is starting, failing or held).")
@click.option("--backoff-initial", default=10.0, show_default=True, type=click.FloatRange(0),
              help="First delay (s) before re-arming a unit systemd gave up on; doubles.")
@click.option("--backoff-max", default=300.0, show_default=True, type=click.FloatRange(0),
              help="Cap (s) of the re-arm delay.")
@click.option("--stable-after", default=300.0, show_default=True, type=click.FloatRange(0),
              help="Seconds of running that reset the backoff.")
@click.option("--grace", default=15.0, show_default=True, type=click.FloatRange(0),
              help="Seconds an active unit's container may be missing before a restart.")
@click.option("--memory-limit", "memory_limits", multiple=True, metavar="[WORKER=]MIB",
              help="Restart a worker above this memory (default 2048 MiB).")
@click.option("--memory-cycles", default=3, show_default=True, type=click.IntRange(1),
              help="Consecutive cycles over the limit before the restart.")
@click.option("--metrics-dir", default=DEFAULT_METRICS_DIR, callback=absolute, metavar="DIR",
              help=METRICS_DIR_HELP + " Written at least every --reconcile-every seconds.")
@click.option("--on-failure", metavar="UNIT", callback=hook_unit, help=ON_FAILURE_HELP)
@click.option("--work-wait", default=30.0, show_default=True, type=click.FloatRange(1),
              help="Seconds work may wait in a Redis queue before its consumers are judged: "
              "one that is not asking Redis for work (nor busy with work it took) is "
              "restarted; if all are, the queue is reported stuck, once.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="docker", show_default=True,
              help="The container engine of the workers (install writes the one it "
              "installed for): docker, through dockerd's socket, held while docker.service "
              "is down; podman, through /run/podman/podman.sock (podman.socket), whose "
              "HealthOnFailure=kill restarts a worker that fails its health check.")
@click.option("--docker", default=DEFAULT_DOCKER, show_default=True,
              help="Accepted for units written by earlier versions; the agent talks to "
              "dockerd's socket itself.", hidden=True)
def agent(env_file: Path, once: bool, dry_run: bool, interval: float, reconcile_every: float,
          backoff_initial: float,
          backoff_max: float, stable_after: float, grace: float, memory_limits: tuple[str, ...],
          memory_cycles: int, metrics_dir: str, on_failure: str | None, work_wait: float,
          runtime: str, docker: str) -> None:
    """The watchdog agent (run by tracardi-agent.service, Type=notify).

    Each cycle it reads every installed unit and every labelled container, then re-arms
    units systemd gave up on (with exponential backoff), restarts units whose container is
    gone or over its memory limit, removes orphan containers, holds restarts while Docker,
    Redis or Elasticsearch is down, and starts again the workers Docker took down with it.
    For workers that take their work from a Redis queue (the catalog says which), it reads
    Redis' CLIENT LIST and the queues every tick and restarts a worker that leaves work
    waiting without asking for it (work-based liveness).
    It reads the manifest and env file again when install changes them. Every action is a
    structured journal entry.
    """
    # Imported here: they load psutil and sdnotify, which other commands need not pay for.
    from tracardi_systemd.agent.loop import Agent, InputFiles, host_call_timeout, stop_on_signals
    from tracardi_systemd.agent.metrics import MetricsFile
    from tracardi_systemd.agent.on_failure import FailureHook
    from tracardi_systemd.agent.watch import Watcher
    from tracardi_systemd.cli.table import describe_cycle
    from tracardi_systemd.host.engine import Engine, EngineError
    from tracardi_systemd.host.journal import Journal
    from tracardi_systemd.host.runtimes import RUNTIME_HOSTS
    from tracardi_systemd.install.manifest import ManifestError
    from tracardi_systemd.spec.addresses import probe

    if dry_run and not once:
        raise click.UsageError("--dry-run needs --once")
    inputs = InputFiles(manifest_path(Path("/")), env_file)
    timeout = host_call_timeout()
    host_runtime = RUNTIME_HOSTS[runtime]
    engine, journal = Engine(host_runtime.socket, timeout=timeout), Journal()
    try:
        config = _config(inputs.manifest, memory_limits, backoff_initial=backoff_initial,
                         backoff_max=backoff_max, stable_after=stable_after, grace=grace,
                         memory_cycles=memory_cycles, work_wait=work_wait,
                         engine_kills_not_live=host_runtime.kills_not_live)
        watchdog = Agent(inputs, Systemctl(timeout=timeout), engine, probe, journal, config,
                         runtime=host_runtime)
    except ManifestError as exc:
        fail(f"{exc} (run  sudo tracardi-systemd install --env-file FILE)")
    except LimitError as exc:
        fail(str(exc))
    metrics = MetricsFile(Path(metrics_dir), heartbeat=reconcile_every)
    watchdog.after_cycle.append(metrics.after_cycle)
    if on_failure:
        watchdog.after_cycle.append(FailureHook(on_failure).after_cycle)
    if not once:
        watchdog.run(stop_on_signals(), Watcher(engine, journal), interval, reconcile_every)
        return
    try:
        observation, decision = watchdog.cycle(dry_run=dry_run)
    except (CommandError, EngineError) as exc:
        fail(str(exc))
    click.echo(describe_cycle(observation, decision, dry_run))


def _config(manifest_file: Path, memory_limits: tuple[str, ...], **knobs: Any) -> Config:
    """The policy's settings, built once; memory limits checked against the workers of the
    installed release. Raises ManifestError, LimitError."""
    from tracardi_systemd.agent.policy import Config
    from tracardi_systemd.install.manifest import load_manifest_file
    from tracardi_systemd.spec.catalog import workers_for

    manifest = load_manifest_file(manifest_file)
    known = [w.name for w in workers_for(manifest.tracardi_version)] if manifest else []
    default_limit, per_worker = parse_memory_limits(memory_limits, known)
    return Config(memory_limits=per_worker, default_memory_limit=default_limit, **knobs)
