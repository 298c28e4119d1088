"""packaging/docs.py: the man page and shell completions the packages ship, written from
click's own commands, so that neither can drift from the program."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from tracardi_systemd.cli.main import main

DOCS = Path(__file__).resolve().parent.parent / "packaging" / "docs.py"


@pytest.fixture(scope="module")
def docs():
    spec = importlib.util.spec_from_file_location("packaging_docs", DOCS)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_man_page_has_every_command_and_option(docs):
    page = docs.man_page()
    context = click.Context(main, info_name="tracardi-systemd")
    for name in main.list_commands(context):
        assert f"\n.SS {name.replace('-', chr(92) + '-')}\n" in page, name
        command = main.get_command(context, name)
        for param in command.params:
            if isinstance(param, click.Option):
                flag = param.opts[0].replace("-", "\\-")
                assert flag in page, f"{name} {param.opts[0]}"
    assert ".SH EXIT STATUS" in page


def test_the_man_page_is_clean_troff(docs, tmp_path):
    groff = shutil.which("groff")
    if groff is None:
        pytest.fail("groff is missing: apt-get install groff-base (scripts/test does)")
    page = tmp_path / "tracardi-systemd.1"
    page.write_text(docs.man_page())
    result = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(page)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o nosort -F _tracardi_systemd_completion tracardi-systemd"),
    ("zsh", "#compdef tracardi-systemd"),
    ("fish", "complete --no-files --command tracardi-systemd"),
])
def test_completions_call_the_program_back(docs, shell, marker):
    script = docs.completion(shell)
    assert marker in script
    assert "_TRACARDI_SYSTEMD_COMPLETE" in script


def test_the_program_answers_its_completion_callback(tool_path):
    """What the installed scripts run at each <TAB>: the commands, then an option."""
    env = {"_TRACARDI_SYSTEMD_COMPLETE": "bash_complete", "COMP_WORDS": "tracardi-systemd ",
           "COMP_CWORD": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([tool_path], env=env, capture_output=True, text=True, check=True)
    assert "plain,install" in out.stdout.splitlines()
    env |= {"COMP_WORDS": "tracardi-systemd uninstall --dr", "COMP_CWORD": "2"}
    out = subprocess.run([tool_path], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["plain,--dry-run"]


def test_the_packages_install_them_and_lintian_wants_no_override():
    packaging = DOCS.parent
    nfpm = (packaging / "nfpm.yaml").read_text()
    for path in ("/usr/share/man/man1/tracardi-systemd.1.gz",
                 "/usr/share/man/man1/tracardi-systemd.1.bz2",
                 "/usr/share/bash-completion/completions/tracardi-systemd",
                 "/usr/share/zsh/vendor-completions/_tracardi-systemd",
                 "/usr/share/zsh/site-functions/_tracardi-systemd",
                 "/usr/share/fish/vendor_completions.d/tracardi-systemd.fish"):
        assert f"dst: {path}\n" in nfpm, path
    assert "no-manual-page" not in (packaging / "lintian-overrides").read_text()
    assert "docs.py" in (packaging / "stage").read_text()
