"""The Ansible role: ansible-lint clean (profile production), secrets never logged, every
variable documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ANSIBLE = Path(__file__).resolve().parent.parent / "ansible"
ROLE = ANSIBLE / "roles" / "tracardi_systemd"
BIN = Path(sys.executable).parent


def test_ansible_lint_is_clean():
    lint = BIN / "ansible-lint"
    if not lint.exists():
        pytest.fail("ansible-lint is missing: . scripts/venv.sh test")
    result = subprocess.run([str(lint), "--offline", "--nocolor"], cwd=ANSIBLE,
                            capture_output=True, text=True, timeout=300,
                            env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(ANSIBLE.parent),
                                 "ANSIBLE_LOCAL_TEMP": "/tmp/ansible-lint-local"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stderr


def leaf_tasks(tasks: list[dict]) -> list[dict]:
    """The tasks, those inside blocks (and their always/rescue parts) included."""
    found = []
    for task in tasks:
        parts = [task.get(key) for key in ("block", "rescue", "always") if task.get(key)]
        found += [t for part in parts for t in leaf_tasks(part)] if parts else [task]
    return found


def test_every_task_that_uses_the_settings_is_no_log():
    for path in (ROLE / "tasks").glob("*.yml"):
        for task in leaf_tasks(yaml.safe_load(path.read_text())):
            if "tracardi_systemd_env " in str(task) or "env-docker.j2" in str(task):
                if "assert" in str(task):
                    continue  # checks the length only, prints no value
                assert task.get("no_log") is True, f"{path.name}: {task['name']}"


def test_every_default_is_documented_and_declared():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    readme = (ROLE / "README.md").read_text()
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    declared = {name for entry in specs["argument_specs"].values() for name in entry["options"]}
    for name in defaults:
        assert f"`{name}`" in readme, name
        assert name in declared, name


def test_playbooks_parse():
    playbook = BIN / "ansible-playbook"
    if not playbook.exists():
        pytest.fail("ansible-playbook is missing: . scripts/venv.sh test")
    for name in ("site.yml", "upgrade.yml"):
        result = subprocess.run([str(playbook), "--syntax-check", "-i", "inventory.example.yml",
                                 name], cwd=ANSIBLE, capture_output=True, text=True, timeout=120,
                                env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/tmp",
                                     "ANSIBLE_LOCAL_TEMP": "/tmp/ansible-syntax-local"})
        assert result.returncode == 0, result.stdout + result.stderr


def run_local(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """ansible or ansible-playbook on this machine itself (connection local)."""
    return subprocess.run(args, cwd=ANSIBLE, capture_output=True, text=True, timeout=300,
                          env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path),
                               "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local"),
                               "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
                               "ANSIBLE_NOCOLOR": "1"})


def test_settings_are_written_as_text_and_booleans_as_yes_or_no(tmp_path):
    import json

    out = tmp_path / "env"
    settings = {"ELASTIC_VERIFY_CERTS": True, "SAVE_LOGS": False, "REDIS_PORT": 6379,
                "REDIS_HOST": "10.0.0.7"}
    result = run_local([str(BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
                        "-m", "ansible.builtin.template",
                        "-a", f"src={ROLE / 'templates' / 'env-docker.j2'} dest={out}",
                        "-e", json.dumps({"tracardi_systemd_env": settings})], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["ELASTIC_VERIFY_CERTS=yes", "REDIS_HOST=10.0.0.7", "REDIS_PORT=6379",
                     "SAVE_LOGS=no"]


FAKE_TOOL = """#!/bin/sh
echo "$@" >> {log}
echo '{{"changed": true, "lines": ["would write units"], "restart": ["tracardi-update.service"]}}'
"""


def check_mode_play(tmp_path: Path, env: dict) -> tuple[subprocess.CompletedProcess[str], Path]:
    import json

    log, program = tmp_path / "argv.log", tmp_path / "tracardi-systemd"
    program.write_text(FAKE_TOOL.format(log=log))
    program.chmod(0o755)
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{"hosts": "localhost", "connection": "local",
                                 "gather_facts": False, "roles": ["tracardi_systemd"]}]))
    variables = {"tracardi_systemd_install_method": "present",
                 "tracardi_systemd_program": str(program),
                 "tracardi_systemd_env_stage": str(tmp_path / "etc" / "env-docker.ansible"),
                 "tracardi_systemd_version": "1.2.0", "tracardi_systemd_env": env}
    result = run_local([str(BIN / "ansible-playbook"), "-i", "localhost,", "--check",
                        str(play), "-e", json.dumps(variables)], tmp_path)
    return result, log


def test_check_mode_runs_install_dry_run_restarts_nothing_and_leaves_no_staged_file(tmp_path):
    result, log = check_mode_play(tmp_path, {"REDIS_HOST": "10.0.0.7"})
    assert result.returncode == 0, result.stdout + result.stderr
    argv = log.read_text().split()
    assert argv[:2] == ["install", "--env-file"] and argv[2].endswith(".env-docker")
    assert not Path(argv[2]).exists()  # the temporary stage is gone
    assert "--dry-run" in argv
    assert argv[argv.index("--tracardi-version") + 1] == "1.2.0"
    assert "changed: [localhost]" in result.stdout  # what the dry run says it would change
    assert not (tmp_path / "etc").exists()  # no folder made for the stage either
    assert "try-restart" not in result.stdout


def test_a_list_as_a_setting_is_refused_naming_it(tmp_path):
    result, log = check_mode_play(tmp_path, {"REDIS_HOST": "10.0.0.7",
                                             "ELASTIC_HOST": ["http://a:9200"]})
    assert result.returncode != 0
    assert "tracardi_systemd_env: ELASTIC_HOST must be a string, a number or a boolean" \
        in result.stdout
    assert not log.exists()


def test_the_example_inventory_names_a_file_the_build_makes():
    import re

    import tracardi_systemd

    inventory = yaml.safe_load((ANSIBLE / "inventory.example.yml").read_text())
    package = inventory["tracardi_workers"]["vars"]["tracardi_systemd_package_file"]
    build = (ANSIBLE.parent / "packaging" / "build").read_text()
    assert 'tracardi-systemd_${deb_version}_${deb_arch}.deb' in build
    assert "deb_version=$version+deb$debian" in build
    assert re.fullmatch(rf"dist/tracardi-systemd_{re.escape(tracardi_systemd.__version__)}"
                        r"\+deb1[23]_amd64\.deb", package), package
