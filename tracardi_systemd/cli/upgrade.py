"""The `upgrade` command: options in, one `Upgrade` run, its outcome out."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tracardi_systemd.cli.options import client_of, engine_of, fail, pull_option
from tracardi_systemd.host.commands import Systemctl
from tracardi_systemd.host.journal import Journal
from tracardi_systemd.install.manifest import ManifestError, load_manifest
from tracardi_systemd.install.transaction import Installer, InstallError
from tracardi_systemd.upgrade.run import (
    Upgrade,
    UpgradeError,
    UpgradeSettings,
    rollback_tag,
)


@click.command()
@click.option("--image-tag", metavar="TAG", help="The image tag to move every worker to.")
@click.option("--rollback", is_flag=True,
              help="Go back to the tag before the last upgrade (the manifest records it).")
@click.option("--window", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Seconds each restarted worker's container must keep running, without "
              "systemd restarting it, before the next worker is restarted.")
@click.option("--start-timeout", default=60.0, show_default=True, type=click.FloatRange(1),
              help="Seconds a restarted worker may take to be running at all.")
@click.option("--liveness-timeout", type=click.FloatRange(0),
              help="Seconds after the window within which a worker's liveness check must "
              "pass, where it has one (default: the check's start period, 120 s for the "
              "update worker).")
@pull_option("always", "use only images on this host")
@click.option("--pull-timeout", default=1800.0, show_default=True, type=click.FloatRange(1),
              help="Seconds one image's pull may take before it is given up (no worker "
              "restarts then). Pull progress goes to stderr, one line per layer done.")
@click.option("--init-timeout", default=1800.0, show_default=True, type=click.FloatRange(1),
              help="Tracardi 0.9+: seconds the new release's tracardi-init.service may take "
              "to succeed; it runs before any worker moves, and when it fails every unit "
              "goes back to the old tag without a worker being restarted.")
@click.option("--dry-run", is_flag=True, help="Show the plan (with the unit files' diffs); "
              "change nothing.")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON document on stdout, also when refused: {"changed", '
              '"result", "from_tag", "to_tag", "failed_unit", "reason", "workers" (each '
              'worker unit\'s image and image id), "lines"} (for Ansible and scripts).')
def upgrade(image_tag: str | None, rollback: bool, window: float, start_timeout: float,
            liveness_timeout: float | None, pull: str, pull_timeout: float,
            init_timeout: float, dry_run: bool, as_json: bool) -> None:
    """Move every worker to another image tag, one worker at a time, rolling back on failure.

    \b
    Pulls every image first (no worker restarts if one cannot be had), installs the
    units with the new tag (the options of the last install otherwise), then restarts the
    running workers one after another. Each must pass a gate: its unit active, one
    container of the new image running for --window seconds without a restart, and its
    liveness check passing where it has one. When a worker fails the gate, every worker
    not on the image it ran before goes back to it (whoever restarted it), the journal
    and stderr say so. SIGINT, SIGTERM or SIGHUP roll back the same way. An upgrade that
    was killed (SIGKILL, power loss) is rolled back by the next upgrade or install.
    Install and uninstall are refused while an upgrade runs, and the reverse.
    Exit status: 0 done (or nothing to do), 1 refused with nothing changed, 2 a wrong
    option, 3 rolled back (or interrupted), 4 the rollback failed too (the workers need
    attention).
    """
    if bool(image_tag) == rollback:
        raise click.UsageError("give either --image-tag TAG or --rollback")
    try:
        manifest = load_manifest(Path("/"))
        installer = Installer(None, Systemctl(), client_of(manifest))
        if not dry_run:
            installer.require_live_host("upgrade", "see the plan with --dry-run")
        say = (lambda line: None) if dry_run else (lambda line: click.echo(line, err=True))
        run = Upgrade(installer, Journal(), say, engine_of(manifest))
        tag = rollback_tag(run.manifest) if rollback else str(image_tag)
        settings = UpgradeSettings(window, start_timeout, liveness_timeout, pull,
                                   pull_timeout, init_timeout)
        outcome = run.run(tag, settings, dry_run=dry_run)
    except (UpgradeError, InstallError, ManifestError) as exc:
        fail(str(exc), document={"changed": False, "result": "refused", "from_tag": "",
                                 "to_tag": image_tag or "", "failed_unit": "",
                                 "reason": str(exc), "workers": {}, "lines": []})
    if as_json:
        click.echo(outcome.to_json())
    elif dry_run:
        click.echo("\n".join(outcome.lines))
    elif outcome.exit_status == 0:
        click.echo(outcome.lines[-1])
    sys.exit(outcome.exit_status)
