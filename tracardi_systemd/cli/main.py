"""The `tracardi-systemd` command line: options in, one library call, messages out."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click

from tracardi_systemd import __version__
from tracardi_systemd.cli.agent import agent, login
from tracardi_systemd.cli.events import events
from tracardi_systemd.cli.options import (
    absolute,
    as_flags,
    client_in,
    client_of,
    engine_of,
    env_file_option,
    fail,
    given_options,
    network_option,
    pull_option,
    render_options,
    running_program,
    selection_options,
    usage_fail,
)
from tracardi_systemd.cli.upgrade import upgrade
from tracardi_systemd.host.commands import Docker, Systemctl
from tracardi_systemd.install.files import write_atomic
from tracardi_systemd.install.journal_catalog import install_catalog, remove_catalog
from tracardi_systemd.install.manifest import Manifest, ManifestError, load_manifest
from tracardi_systemd.install.plan import InstallRequest
from tracardi_systemd.install.reuse import Reuse, recorded, reuse_previous
from tracardi_systemd.install.transaction import Installer, InstallError
from tracardi_systemd.install.uninstall import Uninstaller
from tracardi_systemd.names import (
    DEFAULT_AGENT_PROGRAM,
    DEFAULT_METRICS_DIR,
    DEFAULT_UNIT_DIR,
    METRICS_FILE,
)
from tracardi_systemd.render.prepare import OptionError, Prepared, PrepareError, prepare
from tracardi_systemd.spec.catalog import DEFAULT_VERSION, CatalogError, release


def _prepare(env_file: Path, **options) -> Prepared:
    """prepare(), printing the env file's problems; exits on an error."""
    try:
        prepared = prepare(env_file, **options)
    except OptionError as exc:
        usage_fail(str(exc))
    except PrepareError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        fail(str(exc), problems=[str(problem) for problem in exc.problems])
    if prepared.chosen:
        click.echo(prepared.chosen, err=True)
    for problem in prepared.problems:
        click.echo(str(problem), err=True)
    return prepared


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
    """List the catalog of a Tracardi release: its workers, the run-once init and the
    scheduled jobs; unit, image, the settings each needs, and whether install selects it
    without --worker (as Tracardi's charts enable it)."""
    from tracardi_systemd.cli.table import catalog_rows, columns

    try:
        chosen = release(tracardi_version)
    except CatalogError as exc:
        usage_fail(str(exc))
    if as_json:
        click.echo(json.dumps([w.describe() | {"image_tag": chosen.image_tag}
                               for w in chosen.workers], indent=2))
    else:
        click.echo(columns(catalog_rows(chosen.workers, chosen.image_tag)))


@main.command()
@env_file_option
@selection_options
@network_option
def check(env_file: Path, **selection) -> None:
    """Validate an env file for the selected workers.

    Prints every problem with its file and line; secret values are never shown. Exits 0
    when the file is fine (warnings may still be printed) and 1 on any error.
    """
    prepared = _prepare(env_file, **selection)
    names = ", ".join(w.unit_base for w in prepared.settings.workers)
    click.echo(f"{env_file}: ok for {names}")


@main.command(name="render")
@env_file_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write the unit files into (created if missing).")
@selection_options
@render_options
def render_command(env_file: Path, out: Path, tool: str | None, **options) -> None:
    """Render the unit files into a directory, without installing anything.

    Writes one tracardi-<worker>.service per worker (a tracardi-<worker>@.service template
    when it has replicas), tracardi.target and tracardi-agent.service. The output depends
    only on the inputs, never on where the tool runs.
    """
    prepared = _prepare(env_file, tool=tool or DEFAULT_AGENT_PROGRAM, **options)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in sorted(prepared.files.items()):
            write_atomic(out / name, text.encode())
            click.echo(str(out / name))
    except OSError as exc:
        fail(f"cannot write into {out}: {exc.strerror or exc}")


root_option = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path),
    help="Work on an offline root directory (an image being built), like systemctl --root: "
    "no systemctl call touches the live system.")


@main.command()
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The operator's settings file; it is copied to --installed-env-file "
              "(root-owned, mode 0600). Default: the installed env file itself.")
@click.option("--unit-dir", default=DEFAULT_UNIT_DIR, show_default=True, callback=absolute,
              help="Where to write the unit files.")
@root_option
@click.option("--no-enable", is_flag=True, help="Write the units but do not enable them.")
@click.option("--start", is_flag=True, help="Start the workers and the agent afterwards.")
@pull_option("never", "pull nothing (docker run pulls an image missing at start)")
@click.option("--dry-run", is_flag=True, help="Show what would change, as a diff; write nothing.")
@click.option("--force", is_flag=True,
              help="Replace unit files or an env file the tool did not write or that were "
              "edited.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"changed": true|false, "lines": [...], "restart": [units whose '
              'file or settings changed]} (for Ansible and scripts).')
@click.option("--reset", is_flag=True,
              help="Forget the options of the last install: those not given take their "
              "defaults (the release: the one the env file decides).")
@selection_options
@render_options
@click.pass_context
def install(ctx: click.Context, env_file: Path | None, unit_dir: str, root: Path | None,
            no_enable: bool, start: bool, pull: str, dry_run: bool, force: bool,
            as_json: bool, reset: bool, **options) -> None:
    """Validate, render and install the worker units, then enable them.

    Nothing on disk changes when the env file has an error, or a unit file or env file
    would be overwritten that the tool did not write (unless --force). Options not given
    are those of the last install (the manifest records them); running it again with the
    same inputs changes nothing and says so. Drop-ins (*.service.d/) are never touched.
    """
    if root is not None and (start or pull != "never"):
        usage_fail("--start and --pull act on the live system and cannot be used with --root")
    live = root is None
    installer = Installer(root, Systemctl(root), Docker(options["docker"]))
    previous = _or_fail(installer.previous)
    packaged = installer.on_disk(Path(DEFAULT_AGENT_PROGRAM)).exists()
    reuse = reuse_previous(options, given_options(ctx, options),
                           None if reset else previous,
                           DEFAULT_AGENT_PROGRAM if packaged else None)
    _say_reuse(ctx.command, reuse, reset and previous is not None)
    installer.docker = client_in(options)  # the last install's runtime and client if not given
    if live and not dry_run:
        _or_fail(installer.require_live_host)
    options["tool"] = options["tool"] or installer.agent_program(running_program())
    if live and not dry_run:
        _or_fail(lambda: installer.require_trusted(options["tool"], installer.docker.program))
    if not live:
        _say_baked(installer, options["tool"])
    env_target = Path(options["installed_env_file"])
    env_source = env_file or installer.on_disk(env_target)
    prepared = _prepare(env_source, **options)
    options["tracardi_version"] = prepared.settings.version  # the env file's, if it decided
    request = InstallRequest.of(prepared, installer.root, Path(unit_dir), env_source,
                                env_target, force)
    result = _or_fail(lambda: installer.install(
        request, images=to_pull(installer.docker, prepared.images, pull),
        options=recorded(options),
        tracardi_version=prepared.settings.version, enable=not no_enable, start=start,
        dry_run=dry_run))
    catalog = None if dry_run else _or_fail(lambda: install_catalog(installer.root))
    if catalog:
        result = dataclasses.replace(result, lines=[*result.lines, catalog], changed=True)
    if as_json:
        click.echo(json.dumps({"changed": result.changed, "lines": result.lines,
                               "restart": result.restart}))
    else:
        click.echo("\n".join(result.lines))


def _say_reuse(command: click.Command, reuse: Reuse, reset: bool) -> None:
    if reset:
        click.echo("--reset: the options of the last install are not reused", err=True)
    if reuse.taken:
        click.echo("from the last install (--reset forgets them): "
                   + (as_flags(command, reuse.taken, skip_defaults=True) or "defaults only"),
                   err=True)
    for name, value, why in reuse.dropped:
        click.echo(f"not from the last install ({why}): {as_flags(command, {name: value})}",
                   err=True)
    for note in reuse.notes:
        click.echo(note, err=True)


def _say_baked(installer: Installer, program: str) -> None:
    """An image built with --root runs the agent program at the path its unit names: say
    so when that is a path of this build host (a venv) that the image does not have."""
    if not installer.on_disk(Path(program)).exists():
        click.echo(f"--root: the agent unit runs {program}, a path of this build host that "
                   f"is not in {installer.root}: put it there at that path, install the deb "
                   f"or rpm in the image (it has {DEFAULT_AGENT_PROGRAM}), or pass "
                   "--agent-program", err=True)


def to_pull(docker: Docker, images: list[str], policy: str) -> list[str]:
    if policy == "never":
        return []
    return [image for image in images if policy == "always" or not docker.has_image(image)]


def _or_fail(call):
    try:
        return call()
    except (InstallError, ManifestError) as exc:
        fail(str(exc))


@main.command()
@click.option("--purge", is_flag=True, help="Also remove the installed env file (with --force "
              "even when it was changed since install).")
@click.option("--force", is_flag=True, help="Also remove unit files edited since install.")
@click.option("--dry-run", is_flag=True, help="Say what would be stopped, removed and kept; "
              "change nothing.")
@root_option
def uninstall(purge: bool, force: bool, dry_run: bool, root: Path | None) -> None:
    """Stop, disable and remove what install wrote (never operator drop-ins).

    Unit files edited since install are kept (and named) unless --force; the installed
    env file (and on Podman the license secret) is kept unless --purge. What is kept is
    recorded, so that a later `uninstall --force` or `uninstall --purge` removes it.
    """
    if root is None and os.geteuid() != 0 and not dry_run:
        fail("uninstall changes the system and needs root: run it with sudo")
    uninstaller = Uninstaller(root, Systemctl(root), Docker())
    previous = _or_fail(uninstaller.previous)
    uninstaller.docker = client_of(previous)  # podman removes its license secret
    _or_fail(lambda: uninstaller.run(purge, force, click.echo, dry_run=dry_run))
    if dry_run:
        return
    if previous is not None:
        _remove_metrics(uninstaller.root, previous)
    catalog = _or_fail(lambda: remove_catalog(uninstaller.root))
    if catalog:
        click.echo(catalog)


def _remove_metrics(root: Path, manifest: Manifest) -> None:
    """The agent's last tracardi.prom: node_exporter would export it for ever."""
    directory = str(manifest.options.get("metrics_dir") or DEFAULT_METRICS_DIR)
    metrics = root / directory.lstrip("/") / METRICS_FILE
    try:
        metrics.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        click.echo(f"warning: {metrics} not removed: {exc.strerror or exc}")
        return
    click.echo(f"removed {metrics}")


def _installed_manifest() -> Manifest:
    try:
        manifest = load_manifest(Path("/"))
    except ManifestError as exc:
        fail(str(exc))
    if manifest is None:
        fail("nothing is installed: run  sudo tracardi-systemd install --env-file FILE")
    return manifest


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(as_json: bool) -> None:
    """Show each installed worker: unit and container state, uptime, restarts, memory.

    Also shows the agent and its view of each worker. Exits 0 when every worker unit is
    active with its container running and the agent is running, 1 otherwise.
    """
    from tracardi_systemd.cli.table import format_table
    from tracardi_systemd.observe.status import collect

    manifest = _installed_manifest()
    report = collect(manifest, Systemctl(), engine_of(manifest))
    click.echo(report.to_json() if as_json else format_table(report))
    sys.exit(0 if report.healthy else 1)


main.add_command(login)
main.add_command(agent)
main.add_command(upgrade)
main.add_command(events)
