"""Settings as Tracardi reads them, and the command line's rough edges (issue #10).
Each test failed on the code before the change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from samples import CLEAN_ENV

from tracardi_systemd.cli.main import main
from tracardi_systemd.install.manifest import load_manifest
from tracardi_systemd.names import AGENT_UNIT
from tracardi_systemd.spec.catalog import select_workers
from tracardi_systemd.spec.envfile import load_env_file
from tracardi_systemd.spec.validate import validate

DOCS_LINES = [
    "REDIS_HOST=redis://<redis-ip>:6379",
    "ELASTIC_HOST=http://<elastic-ip>:9200",
    "API_LICENSE=paste license here",
]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("line", DOCS_LINES)
def test_a_placeholder_anywhere_in_a_value_is_an_error_naming_the_line(write_env, line):
    path = write_env(CLEAN_ENV + line + "\n")
    problems = validate(load_env_file(path), select_workers("0.8.1"))
    number = len(CLEAN_ENV.splitlines()) + 1
    assert any(str(p).startswith(f"{path}:{number}: error: ") and "placeholder" in p.message
               for p in problems), [str(p) for p in problems]


def test_install_with_the_docs_placeholders_changes_no_installed_file(tmp_path, write_env):
    root = tmp_path / "root"
    assert invoke("install", "--root", str(root), "--env-file",
                  str(write_env(CLEAN_ENV))).exit_code == 0
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    docs = write_env(CLEAN_ENV.replace("REDIS_HOST=10.0.0.7", DOCS_LINES[0]), name="docs.env")
    result = invoke("install", "--root", str(root), "--env-file", str(docs))
    assert result.exit_code == 1
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_an_open_source_host_is_told_how_to_select_the_open_source_worker(write_env):
    version = ("--tracardi-version", "0.8.1")
    result = invoke("check", "--env-file", str(write_env("REDIS_HOST=10.0.0.7\n")), *version)
    assert result.exit_code == 1
    assert "no license" in result.stderr
    assert "select it with --worker update" in result.stderr
    ok = invoke("check", "--env-file", str(write_env("REDIS_HOST=10.0.0.7\n")),
                "--worker", "update", *version)
    assert ok.exit_code == 0


def test_the_install_plan_mentions_secrets_only_when_there_are_some(tmp_path, write_env):
    plain = invoke("install", "--root", str(tmp_path / "a"), "--dry-run", "--worker", "update",
                   "--tracardi-version", "0.8.1",
                   "--env-file", str(write_env("REDIS_HOST=10.0.0.7\n")))
    assert "copy env file" in plain.stdout and "secrets" not in plain.stdout
    secret = invoke("install", "--root", str(tmp_path / "b"), "--dry-run",
                    "--env-file", str(write_env(CLEAN_ENV, name="b.env")))
    assert "content not shown: it holds secrets (API_LICENSE)" in secret.stdout


@pytest.mark.parametrize("option", ["--memory-limit", "--replicas"])
def test_a_worker_name_no_selected_worker_has_is_refused_by_both_options(write_env, tmp_path,
                                                                         option):
    result = invoke("render", "--env-file", str(write_env(CLEAN_ENV)),
                    "--out", str(tmp_path / "out"), option, "bogus=100")
    assert result.exit_code == 2
    assert f"{option} 'bogus=100': 'bogus' is not a selected worker" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_second_install_reuses_the_options_of_the_first_and_says_so(tmp_path, write_env):
    root, env = tmp_path / "root", write_env(CLEAN_ENV)
    first = invoke("install", "--root", str(root), "--env-file", str(env), "--network", "host",
                   "--replicas", "update=2", "--agent-interval", "45")
    assert first.exit_code == 0, first.output
    units = root / "etc/systemd/system"
    before = {p.name: p.read_text() for p in units.glob("*.service")}

    again = invoke("install", "--root", str(root), "--env-file", str(env))
    assert again.exit_code == 0, again.output
    assert "nothing to change" in again.stdout
    assert ("from the last install (--reset forgets them): --tracardi-version 0.8.1 "
            "--network host --replicas update=2 --agent-interval 45") in again.stderr
    assert {p.name: p.read_text() for p in units.glob("*.service")} == before

    changed = invoke("install", "--root", str(root), "--env-file", str(env), "--replicas",
                     "update=3", "--json")
    result = json.loads(changed.stdout)
    assert result["changed"] is True
    assert "enable tracardi-update@3.service" in result["lines"]
    assert load_manifest(root).options["network"] == "host"  # still reused


def test_a_longer_agent_interval_lengthens_the_watchdog(tmp_path, write_env):
    root = tmp_path / "root"
    invoke("install", "--root", str(root), "--env-file", str(write_env(CLEAN_ENV)),
           "--agent-interval", "45")
    text = (root / "etc/systemd/system" / AGENT_UNIT).read_text()
    assert "WatchdogSec=135" in text and "--interval 45\n" in text


def test_install_json_reports_no_change_on_a_second_run(tmp_path, write_env):
    root, env = tmp_path / "root", write_env(CLEAN_ENV)
    first = json.loads(invoke("install", "--root", str(root), "--env-file", str(env),
                              "--json").stdout)
    second = json.loads(invoke("install", "--root", str(root), "--env-file", str(env),
                               "--json").stdout)
    assert (first["changed"], second["changed"]) == (True, False)
    assert second["lines"] == ["nothing to change"]


def test_reused_workers_can_be_widened_again_with_all(tmp_path, write_env):
    root, env = tmp_path / "root", write_env(CLEAN_ENV)
    invoke("install", "--root", str(root), "--env-file", str(env), "--worker", "update")
    assert not (root / "etc/systemd/system/tracardi-scheduler.service").exists()
    invoke("install", "--root", str(root), "--env-file", str(env), "--worker", "all")
    assert (root / "etc/systemd/system/tracardi-scheduler.service").exists()
    assert Path(root / "etc/systemd/system/tracardi-update.service").exists()
