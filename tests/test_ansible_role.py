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


def test_every_task_that_uses_the_settings_is_no_log():
    for path in (ROLE / "tasks").glob("*.yml"):
        for task in yaml.safe_load(path.read_text()):
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
