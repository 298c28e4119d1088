"""Commands that touch the host: refusals before anything changes, and `login`'s token path.

A fake docker client (a script recording its argv and standard input) stands in for the
real one; the policy under test is the CLI's own code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from samples import CLEAN_ENV

from tracardi_systemd.cli import main as cli_module
from tracardi_systemd.cli.main import main
from tracardi_systemd.host.commands import Systemctl
from tracardi_systemd.install import transaction as installer_module

TOKEN = "dckr_pat_SECRET-TOKEN-3a7f"


@pytest.fixture
def fake_docker(tmp_path: Path) -> Path:
    script = tmp_path / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {tmp_path}/argv\n'
        f"cat > {tmp_path}/stdin\n"
        'if [ -n "$FAIL_WITH" ]; then echo "$FAIL_WITH" >&2; exit 1; fi\n'
        "echo 'Login Succeeded'\n"
    )
    script.chmod(0o755)
    return script


def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), input=stdin, env=env, catch_exceptions=False)


def test_login_passes_the_token_on_stdin_only(fake_docker, tmp_path, write_env):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    result = invoke("login", "--username", "tracardi", "--token-file", str(token_file),
                    "--docker", str(fake_docker), "--env-file", str(tmp_path / "none"))
    assert result.exit_code == 0, result.output
    argv = (tmp_path / "argv").read_text().split()
    assert argv == ["login", "--username", "tracardi", "--password-stdin"]
    assert (tmp_path / "stdin").read_text() == TOKEN
    assert TOKEN not in result.output


def test_login_reads_the_token_and_user_from_the_env_file(fake_docker, tmp_path, write_env):
    env = write_env(CLEAN_ENV + f"TRACARDI_REGISTRY_USER=ops\nTRACARDI_REGISTRY_TOKEN={TOKEN}\n")
    result = invoke("login", "--registry", "registry.example", "--docker", str(fake_docker),
                    "--env-file", str(env))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "argv").read_text().split() == [
        "login", "--username", "ops", "--password-stdin", "registry.example"]
    assert (tmp_path / "stdin").read_text() == TOKEN


def test_login_failure_never_repeats_the_token(fake_docker, tmp_path):
    result = invoke("login", "--username", "u", "--docker", str(fake_docker),
                    "--env-file", str(tmp_path / "none"), stdin=TOKEN,
                    env={"FAIL_WITH": f"denied for {TOKEN}"})
    assert result.exit_code == 1
    assert TOKEN not in result.output
    assert "denied for <token>" in result.output


def test_login_without_a_user_says_how_to_give_one(fake_docker, tmp_path):
    result = invoke("login", "--docker", str(fake_docker), "--env-file", str(tmp_path / "x"),
                    stdin=TOKEN)
    assert result.exit_code == 2
    assert "--username" in result.output and "TRACARDI_REGISTRY_USER" in result.output


def test_install_needs_root(monkeypatch, write_env):
    monkeypatch.setattr(installer_module.os, "geteuid", lambda: 1000)
    result = invoke("install", "--env-file", str(write_env(CLEAN_ENV)))
    assert result.exit_code == 1
    assert "needs root" in result.output and "sudo" in result.output


def test_install_needs_a_running_systemd(monkeypatch, write_env):
    monkeypatch.setattr(installer_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(installer_module, "systemd_is_running", lambda: False)
    result = invoke("install", "--env-file", str(write_env(CLEAN_ENV)))
    assert result.exit_code == 1
    assert "systemd is not running" in result.output and "--root" in result.output


def test_install_needs_the_docker_client(monkeypatch, write_env, tmp_path):
    monkeypatch.setattr(installer_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(installer_module, "systemd_is_running", lambda: True)
    missing = tmp_path / "no-docker"
    result = invoke("install", "--env-file", str(write_env(CLEAN_ENV)), "--docker", str(missing))
    assert result.exit_code == 1
    assert f"{missing} is missing" in result.output and "docker.io" in result.output


def test_status_without_an_installation_says_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setattr(cli_module, "load_manifest", lambda root: None)
    result = invoke("status")
    assert result.exit_code == 1
    assert "tracardi-systemd install" in result.output


@pytest.mark.parametrize(("options", "client", "socket"), [
    ({"runtime": "podman"}, "/usr/bin/podman", "/run/podman/podman.sock"),
    ({"runtime": "podman", "docker": "/opt/docker/bin/docker"}, "/usr/bin/podman",
     "/run/podman/podman.sock"),
    ({"docker": "/opt/docker/bin/docker"}, "/opt/docker/bin/docker", "/var/run/docker.sock"),
    ({}, "/usr/bin/docker", "/var/run/docker.sock"),
])
def test_status_and_upgrade_speak_to_the_installed_runtime(options, client, socket):
    """A Podman install is answered from Podman's socket and upgraded with its client, not
    from dockerd's, which may run beside it with other containers."""
    from tracardi_systemd.cli.options import client_of, engine_of
    from tracardi_systemd.install.manifest import Manifest

    manifest = Manifest(unit_dir="/etc/systemd/system", env_file="/etc/tracardi/.env-docker",
                        tracardi_version="0.8.1", units=[], options=options)
    assert client_of(manifest).program == client
    assert engine_of(manifest).socket_path == socket


def test_every_runtime_has_its_units_and_its_host_facts():
    from tracardi_systemd.host.runtimes import RUNTIME_HOSTS
    from tracardi_systemd.names import RUNTIMES
    from tracardi_systemd.render.units import RUNTIME_UNITS

    assert tuple(RUNTIME_UNITS) == tuple(RUNTIME_HOSTS) == RUNTIMES


def test_unit_states_come_from_one_list_units_call(tmp_path):
    program = tmp_path / "systemctl"
    program.write_text(
        "#!/bin/sh\necho \"$@\" > " + str(tmp_path / "argv") + "\n"
        "echo 'tracardi-scheduler@1.service loaded active   running Tracardi scheduler worker'\n"
        "echo 'tracardi-trigger.service     loaded failed   failed  Tracardi trigger worker'\n"
        "echo 'docker.service               loaded inactive dead    Docker Application'\n")
    program.chmod(0o755)
    units = ["tracardi-scheduler@1.service", "tracardi-trigger.service", "docker.service",
             "tracardi-gone.service"]

    states = Systemctl(program=str(program)).states(units)

    assert states == {"tracardi-scheduler@1.service": ("loaded", "active", "running"),
                      "tracardi-trigger.service": ("loaded", "failed", "failed"),
                      "docker.service": ("loaded", "inactive", "dead")}
    assert (tmp_path / "argv").read_text().split() == [
        "list-units", "--all", "--plain", "--no-legend", "--full", "--", *units]


def test_queued_jobs_come_from_one_list_jobs_call(tmp_path):
    program = tmp_path / "systemctl"
    program.write_text(  # systemd 252's list-jobs --no-legend
        "#!/bin/sh\necho \"$@\" > " + str(tmp_path / "argv") + "\n"
        "echo '1203 tracardi-scheduler.service stop running'\n"
        "echo '1204 docker.service             stop waiting'\n")
    program.chmod(0o755)

    jobs = Systemctl(program=str(program)).jobs()

    assert jobs == {"tracardi-scheduler.service": "stop", "docker.service": "stop"}
    assert (tmp_path / "argv").read_text().split() == ["list-jobs", "--no-legend", "--full"]
