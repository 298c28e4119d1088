"""`install --tracardi-version X` on a host installed with another release: the plan says
what goes, the env file is checked against the new release before anything changes, the
old release's units are stopped and removed, and options naming its workers are not reused.

Against an offline root (real files under tmp_path); what only a live host does (stopping,
restarting) is checked on the calls the installer makes, through a recording systemctl."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from samples import CLEAN_ENV
from test_validate_versions import ENV_12

from tracardi_systemd.cli.main import main
from tracardi_systemd.host.commands import Systemctl
from tracardi_systemd.install.manifest import load_manifest
from tracardi_systemd.install.plan import InstallRequest
from tracardi_systemd.install.transaction import Installer
from tracardi_systemd.install.uninstall import Uninstaller
from tracardi_systemd.render.prepare import prepare

UNITS = "etc/systemd/system"
ONLY_081 = ["tracardi-segmentation.service", "tracardi-scheduler.service",
            "tracardi-post-collection.service", "tracardi-trigger.service",
            "tracardi-heartbeat-profile-segmentation.timer", "tracardi-heartbeat-visit-end.timer"]


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def host_081(tmp_path, write_env):
    """An offline root installed with 0.8.1 (two trigger replicas, host network)."""
    root = tmp_path / "root"
    first = invoke("install", "--root", root, "--env-file", write_env(CLEAN_ENV),
                   "--network", "host", "--replicas", "trigger=2")
    assert first.exit_code == 0, first.output
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file and link under the root with a digest of what it holds or points to."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path)] = "-> " + str(path.readlink())
        elif path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_moving_to_12_replaces_the_units_and_says_what_goes_first(host_081, write_env):
    moved = invoke("install", "--root", host_081, "--env-file", write_env(ENV_12, "env12"),
                   "--tracardi-version", "1.2.0")
    assert moved.exit_code == 0, moved.output
    first = moved.stdout.splitlines()[0]
    assert first.startswith("Tracardi 0.8.1 -> 1.2.0: stop and disable tracardi-segmentation."
                            "service, tracardi-scheduler.service, ")
    assert "tracardi-trigger@1.service, tracardi-trigger@2.service" in first
    assert "remove tracardi-trigger@.service" in moved.stdout
    assert "remove tracardi-heartbeat-visit-end.service" in moved.stdout  # its job, too

    files = sorted(p.name for p in (host_081 / UNITS).glob("tracardi*") if p.is_file())
    assert files == sorted(["tracardi.target", "tracardi-agent.service", "tracardi-init.service",
                            "tracardi-background-function.service",
                            "tracardi-background-logger.service",
                            "tracardi-background-destination.service",
                            "tracardi-apm.service", "tracardi-update.service"])
    wants = sorted(p.name for p in (host_081 / UNITS / "tracardi.target.wants").iterdir())
    assert wants == [f for f in files if f != "tracardi.target"]
    manifest = load_manifest(host_081)
    assert manifest.tracardi_version == "1.2.0"
    assert not set(ONLY_081) & (set(manifest.units) | set(manifest.files))
    assert "tracardi/update-worker:1.2.x" in (host_081 / UNITS / "tracardi-update.service"
                                              ).read_text()


def test_options_naming_the_old_release_are_not_reused_and_the_rest_are(host_081, write_env):
    moved = invoke("install", "--root", host_081, "--env-file", write_env(ENV_12, "env12"),
                   "--tracardi-version", "1.2.0")
    assert "not from the last install (Tracardi 0.8.1, now 1.2.0): --replicas trigger=2" \
        in moved.stderr
    assert "from the last install (--reset forgets them): --network host" in moved.stderr
    assert "--network host" in (host_081 / UNITS / "tracardi-apm.service").read_text()


def test_the_release_of_the_last_install_is_kept_without_the_option(host_081, write_env):
    again = invoke("install", "--root", host_081, "--env-file", write_env(CLEAN_ENV))
    assert again.exit_code == 0, again.output
    assert "from the last install (--reset forgets them): --tracardi-version 0.8.1" \
        in again.stderr
    assert "nothing to change" in again.stdout


def test_an_env_file_short_of_the_new_releases_needs_changes_nothing(host_081):
    before = snapshot(host_081)
    refused = invoke("install", "--root", host_081, "--tracardi-version", "1.2.0")
    assert refused.exit_code == 1
    assert "MYSQL_HOST is not set; tracardi-init," in refused.stderr
    assert "PULSAR_HOST is not set;" in refused.stderr
    assert snapshot(host_081) == before


def test_a_dry_run_of_a_move_shows_the_plan_and_the_diffs_and_writes_nothing(host_081,
                                                                               write_env):
    before = snapshot(host_081)
    dry = invoke("install", "--root", host_081, "--env-file", write_env(ENV_12, "env12"),
                 "--tracardi-version", "1.2.0", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("Tracardi 0.8.1 -> 1.2.0: stop and disable ")
    assert "+++ b/tracardi-init.service" in dry.stdout
    assert "--- a/tracardi-trigger@.service" in dry.stdout
    assert snapshot(host_081) == before


class RecordingSystemctl(Systemctl):
    """Records every systemctl call instead of running it, as on a live host where every
    unit asked about has failed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> str:
        self.calls.append(args)
        if args[0] == "show":
            units = args[args.index("--") + 1:]
            return "".join(f"Id={unit}\nActiveState=failed\n\n" for unit in units)
        return ""


def test_on_a_live_host_the_old_units_stop_before_their_files_go_and_kept_ones_restart(
        host_081, write_env):
    env = write_env(ENV_12, "env12")
    prepared = prepare(env, "1.2.0", network="host")
    request = InstallRequest.of(prepared, host_081, Path("/etc/systemd/system"), env,
                                Path("/etc/tracardi/.env-docker"))
    systemctl = RecordingSystemctl()
    installer = Installer(host_081, systemctl, docker=None)  # type: ignore[arg-type]
    installer.live = True  # the calls of a live host, the files of the offline root
    installer.install(request, images=[], options={}, tracardi_version="1.2.0", enable=True,
                      start=False, dry_run=False)

    disable, stop, show, reset, reload, restart, restart_agent, enable = systemctl.calls
    assert show[0] == "show"
    assert disable[:3] == ("disable", "--quiet", "--now")
    assert set(disable[3:]) == {*ONLY_081, "tracardi-trigger@1.service",
                                "tracardi-trigger@2.service"} - {"tracardi-trigger.service"}
    # The jobs' services are never enabled: stopped by name, as their files go.
    assert stop == ("stop", "tracardi-heartbeat-profile-segmentation.service",
                    "tracardi-heartbeat-visit-end.service")
    assert reset[0] == "reset-failed" and set(reset[1:]) == set(disable[3:]) | set(stop[1:])
    assert reload == ("daemon-reload",)
    # update is in both releases: restarted if it runs, so no 0.8.1 container stays up.
    assert restart == ("try-restart", "tracardi-update.service")
    # Its unit changed (1.2's apm may use 2500 MiB): it reads the new manifest at once.
    assert restart_agent == ("try-restart", "tracardi-agent.service")
    assert enable[0] == "enable"


def test_uninstall_on_a_live_host_stops_the_jobs_services_too(host_081):
    systemctl = RecordingSystemctl()
    uninstaller = Uninstaller(host_081, systemctl, docker=None)  # type: ignore[arg-type]
    uninstaller.live = True
    uninstaller.run(purge=False, force=False, say=lambda line: None)
    assert systemctl.calls[0][:3] == ("disable", "--quiet", "--now")
    assert systemctl.calls[1] == ("stop", "tracardi-heartbeat-profile-segmentation.service",
                                  "tracardi-heartbeat-visit-end.service")
    assert not list((host_081 / UNITS).glob("tracardi-heartbeat*"))
