"""install/trust.py: root's agent loads every file of the package, so every one is checked."""

from __future__ import annotations

import os
import pkgutil
import sys
from pathlib import Path

import tracardi_systemd
from tracardi_systemd.install.trust import agent_program_problem, package_files, untrusted
from tracardi_systemd.render.units import templates_dir


def test_every_module_and_template_of_the_package_is_checked():
    checked = set(package_files())
    modules = [Path(sys.modules[tracardi_systemd.__name__].__file__ or "")]
    for info in pkgutil.walk_packages(tracardi_systemd.__path__, "tracardi_systemd."):
        spec = info.module_finder.find_spec(info.name, None)  # type: ignore[call-arg]
        assert spec is not None and spec.origin is not None
        modules.append(Path(spec.origin))
    assert len(modules) > 40  # the subpackages are walked, not only the top folder
    templates = list(templates_dir().glob("*.j2"))
    assert templates
    missing = [str(path) for path in modules + templates if path not in checked]
    assert missing == []


def test_a_writable_module_deep_in_a_subpackage_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "tracardi_systemd"
    deep = package / "agent" / "policy.py"
    deep.parent.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    deep.write_text("")
    os.chmod(deep, 0o666)
    monkeypatch.setattr(tracardi_systemd, "__file__", str(package / "__init__.py"))
    program = Path(sys.executable)

    assert agent_program_problem(program) == (
        f"{deep} is writable by users other than root (mode 0666)")


def test_a_program_another_user_can_edit_is_untrusted(tmp_path):
    folder = tmp_path / "home-of-someone"
    folder.mkdir()
    program = folder / "tracardi-systemd"
    program.write_text("#!/usr/bin/python3\n")
    program.chmod(0o755)
    assert untrusted(program) is None
    os.chown(folder, 1000, 1000)
    assert untrusted(program) == f"{folder} is owned by uid 1000, not root"
    os.chown(folder, 0, 0)
    program.chmod(0o777)
    assert "writable by users other than root" in untrusted(program)
    program.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(program)
    os.chown(program, 1000, 1000)
    assert untrusted(link) == f"{program} is owned by uid 1000, not root"


def test_a_script_whose_interpreter_another_user_owns_is_refused(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    python = venv / "python"
    python.write_text("")
    os.chown(python, 1000, 1000)
    program = tmp_path / "tracardi-systemd"
    program.write_text(f"#!{python}\n")
    problem = agent_program_problem(program)
    assert problem == f"{python} is owned by uid 1000, not root"
