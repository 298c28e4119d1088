"""install/transaction.py: the locked install and uninstall against an offline root (real
files under tmp_path, the CLI as the operator runs it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from offline import invoke, snapshot
from samples import CLEAN_ENV

from tracardi_systemd.install.lock import host_lock
from tracardi_systemd.install.manifest import Manifest, digest, load_manifest

SCHEDULER = "tracardi-scheduler.service"


def test_uninstall_with_a_hostile_manifest_deletes_nothing(installed, tmp_path):
    root, _ = installed
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = root / "var/lib/tracardi-systemd/manifest.json"
    data = json.loads(path.read_text())
    data["files"][f"../../../../{victim.name}"] = digest(b"precious")
    data["env_file"] = f"/../../{victim.name}"
    path.write_text(json.dumps(data))
    before = snapshot(root)
    result = invoke("uninstall", "--root", str(root), "--purge")
    assert result.exit_code == 1
    assert "manifest.json cannot be used" in result.stderr
    assert victim.read_text() == "precious"
    assert snapshot(root) == before


def test_uninstall_keeps_a_hand_edited_unit_unless_forced(installed):
    root, _ = installed
    unit_file = root / "etc/systemd/system" / SCHEDULER
    unit_file.write_text(unit_file.read_text() + "# my change\n")
    result = invoke("uninstall", "--root", str(root))
    assert result.exit_code == 0, result.output
    assert f"kept {unit_file}: it was edited" in result.stdout
    assert unit_file.exists()
    assert not (root / "etc/systemd/system/tracardi-update.service").exists()


def test_uninstall_purge_leaves_none_of_its_own_folders(installed):
    root, _ = installed
    assert invoke("uninstall", "--root", str(root), "--purge").exit_code == 0
    assert not (root / "etc/tracardi").exists()
    assert not (root / "var/lib/tracardi-systemd").exists()


def test_a_second_install_while_one_runs_is_refused_and_changes_nothing(tmp_path, write_env):
    root = tmp_path / "root"
    root.mkdir()
    env = write_env(CLEAN_ENV)
    with host_lock(root):
        result = invoke("install", "--root", str(root), "--env-file", str(env))
    assert result.exit_code == 1
    assert "another tracardi-systemd install, uninstall or upgrade is running" in result.stderr
    assert list(root.iterdir()) == []


def test_a_foreign_installed_env_file_is_not_overwritten_without_force(tmp_path, write_env):
    root = tmp_path / "root"
    foreign = root / "etc/app/settings"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("SOMEONE_ELSES=1\n")
    env = write_env(CLEAN_ENV)
    result = invoke("install", "--root", str(root), "--env-file", str(env),
                    "--installed-env-file", "/etc/app/settings")
    assert result.exit_code == 1
    assert "was not written by tracardi-systemd" in result.stderr
    assert foreign.read_text() == "SOMEONE_ELSES=1\n"


def test_temporary_files_a_killed_install_left_are_cleaned(installed):
    root, env = installed
    unit_dir = root / "etc/systemd/system"
    ours = unit_dir / f".{SCHEDULER}.k3j_9x2a.tmp"
    ours.write_text("half")
    theirs = unit_dir / ".something-else.abcdefgh.tmp"
    theirs.write_text("not ours")
    result = invoke("install", "--root", str(root), "--env-file", str(env), "--stop-timeout", "9")
    assert result.exit_code == 0, result.output
    assert not ours.exists()
    assert theirs.exists()


def test_files_of_an_install_killed_before_its_manifest_are_still_its_own(installed,
                                                                           monkeypatch):
    """Killed after writing the units, before the final manifest: the next install, with
    other options and no --force, takes them over; uninstall removes them."""
    root, env = installed

    class Killed(BaseException):
        """Stands in for a SIGKILL right after the files were written."""

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr("tracardi_systemd.install.transaction.manifest_for", killed)
    with pytest.raises(Killed):
        invoke("install", "--root", str(root), "--env-file", str(env), "--stop-timeout", "7")
    monkeypatch.undo()
    unit_file = root / "etc/systemd/system" / SCHEDULER
    assert "stop -t 7 " in unit_file.read_text()
    result = invoke("install", "--root", str(root), "--env-file", str(env),
                    "--stop-timeout", "8")
    assert result.exit_code == 0, result.output
    assert "stop -t 8 " in unit_file.read_text()
    assert load_manifest(root).pending == {}
    assert invoke("uninstall", "--root", str(root)).exit_code == 0
    assert not unit_file.exists()


def test_every_hint_uninstall_prints_works_when_followed(installed):
    """kept ... (uninstall --force removes it), (uninstall --purge removes it): each command
    named, run after the first uninstall, removes what it says, until nothing is left."""
    root, _ = installed
    unit_file = root / "etc/systemd/system" / SCHEDULER
    unit_file.write_text(unit_file.read_text() + "# my change\n")
    env_file = root / "etc/tracardi/.env-docker"
    env_file.write_text(env_file.read_text() + "# my note\n")
    first = invoke("uninstall", "--root", str(root))
    assert f"kept {unit_file}: it was edited since tracardi-systemd wrote it (uninstall " \
           "--force removes it)" in first.stdout
    assert f"kept {env_file} (uninstall --purge removes it)" in first.stdout

    forced = invoke("uninstall", "--root", str(root), "--force")
    assert f"removed {unit_file}" in forced.stdout
    assert not unit_file.exists()
    purged = invoke("uninstall", "--root", str(root), "--purge")
    assert (f"kept {env_file}: it changed since tracardi-systemd wrote it (uninstall --purge "
            "--force removes it)") in purged.stdout
    both = invoke("uninstall", "--root", str(root), "--purge", "--force")
    assert f"removed {env_file}" in both.stdout
    assert not env_file.exists()
    assert not (root / "var/lib/tracardi-systemd").exists()
    assert "nothing to uninstall" in invoke("uninstall", "--root", str(root)).stdout


def test_uninstall_dry_run_says_what_it_would_do_and_changes_nothing(installed):
    root, _ = installed
    before = snapshot(root)
    unit_file = root / "etc/systemd/system" / SCHEDULER
    result = invoke("uninstall", "--root", str(root), "--dry-run", "--purge")
    assert result.exit_code == 0, result.output
    assert f"would remove {unit_file}" in result.stdout
    assert f"would remove {root / 'etc/tracardi/.env-docker'}" in result.stdout
    assert "would stop and disable tracardi.target" in result.stdout
    assert snapshot(root) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="the trust check guards what root runs")
@pytest.mark.parametrize(("option", "units"), [("--agent-program", "the agent unit"),
                                                ("--docker", "the worker units")])
def test_every_program_roots_units_run_is_checked_however_chosen(
        tmp_path, write_env, live_install_stops_before_writing, tool_path, option, units):
    program = world_writable_program(tmp_path, "prog")
    others = ["--agent-program", tool_path] if option == "--docker" else []
    result = invoke("install", "--env-file", str(write_env(CLEAN_ENV)), option, str(program),
                    *others)
    assert result.exit_code == 1
    assert (f"error: {units} would run {program} as root, but {program} is writable by "
            "users other than root (mode 0777)") in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the trust check guards what root runs")
def test_a_reused_agent_program_is_checked_too(tmp_path, write_env, monkeypatch,
                                               live_install_stops_before_writing):
    from tracardi_systemd.install.transaction import Installer

    program = world_writable_program(tmp_path, "tracardi-systemd")
    last = Manifest(unit_dir="/etc/systemd/system", env_file="/etc/tracardi/.env-docker",
                    tracardi_version="0.8.1", units=[], options={"tool": str(program)})
    monkeypatch.setattr(Installer, "previous", lambda self: last)
    monkeypatch.setattr(Installer, "agent_program", lambda self, running: "/not/this/one")
    result = invoke("install", "--env-file", str(write_env(CLEAN_ENV)))
    assert f"--agent-program {program}" in result.stderr  # reused, and said
    assert result.exit_code == 1
    assert f"error: the agent unit would run {program} as root" in result.stderr


def world_writable_program(tmp_path: Path, name: str) -> Path:
    program = tmp_path / name
    program.write_text("#!/bin/sh\n")
    os.chmod(program, 0o777)
    return program


@pytest.fixture
def live_install_stops_before_writing(monkeypatch):
    """A live install whose host checks pass and whose transaction must never be reached."""
    from tracardi_systemd.install.transaction import Installer

    def reached(*args, **kwargs):
        raise AssertionError("install went on with an untrusted program")

    monkeypatch.setattr(Installer, "require_live_host", lambda self, *a, **k: None)
    monkeypatch.setattr(Installer, "install", reached)


def test_a_podman_host_without_catatonit_is_refused_naming_the_package(tmp_path):
    from tracardi_systemd.install.transaction import InstallError, require_podman_init

    helpers, bin_dir = tmp_path / "libexec-podman", tmp_path / "bin"
    helpers.mkdir()
    bin_dir.mkdir()
    (bin_dir / "catatonit").write_text("not executable\n")
    with pytest.raises(InstallError) as refused:
        require_podman_init([str(helpers), str(bin_dir)])
    assert "init binary catatonit is not on this host" in str(refused.value)
    assert "apt-get install catatonit" in str(refused.value)
    (helpers / "catatonit").write_text("#!/bin/sh\n")
    os.chmod(helpers / "catatonit", 0o755)
    require_podman_init([str(helpers), str(bin_dir)])  # found: no error


@pytest.mark.parametrize(("file_state", "active", "enabled"), [
    ("disabled", "inactive", True), ("enabled", "inactive", True), ("enabled", "active", False)])
def test_a_podman_install_enables_podman_socket_unless_it_already_runs(
        tmp_path, file_state, active, enabled):
    """Debian 13's podman leaves podman.socket disabled; the agent reaches Podman through it."""
    from fakes import FakeSystemctl, unit_props

    from tracardi_systemd.host.commands import Docker
    from tracardi_systemd.install.plan import InstallRequest
    from tracardi_systemd.install.transaction import Installer

    systemctl = FakeSystemctl({"podman.socket": dict(unit_props(active),
                                                     UnitFileState=file_state)})
    installer = Installer(None, systemctl, Docker("/usr/bin/podman"))  # type: ignore[arg-type]
    request = InstallRequest(root=Path("/"), unit_dir=Path("/etc/systemd/system"),
                             env_source=tmp_path / "env", env_data=b"", env_target=tmp_path,
                             rendered={}, units=[], force=False,
                             quadlet_dir=Path("/etc/containers/systemd"))
    lines = installer._enable_podman_socket(request)
    assert (systemctl.calls == [("enable", "--now", "--quiet", "podman.socket")]) == enabled
    assert bool(lines) == enabled
    docker_request = InstallRequest(**{**request.__dict__, "quadlet_dir": None})
    assert installer._enable_podman_socket(docker_request) == []
