"""How install reuses the options of the last one: said as flags that paste back, forgotten
with --reset, left behind when they no longer apply, the packaged agent program preferred."""

import shlex
from pathlib import Path

from click.testing import CliRunner
from samples import CLEAN_ENV

from tracardi_systemd.cli.main import main

UNITS = Path("etc/systemd/system")
PREFIX = "from the last install (--reset forgets them): "


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def reused_flags(stderr: str) -> list[str]:
    line = next(line for line in stderr.splitlines() if line.startswith(PREFIX))
    return shlex.split(line.removeprefix(PREFIX))


def test_reused_options_are_flags_that_paste_back(tmp_path, write_env, tool_path):
    root, env = tmp_path / "root", write_env(CLEAN_ENV)
    first = invoke("install", "--root", root, "--env-file", env, "--worker", "update",
                   "--worker", "scheduler", "--set", "FOO=bar baz", "--memory-limit", "1024",
                   "--no-liveness", "--agent-program", tool_path, "--network", "host")
    assert first.exit_code == 0, first.output
    again = invoke("install", "--root", root, "--env-file", env)
    assert again.exit_code == 0, again.output
    flags = reused_flags(again.stderr)
    assert flags == ["--tracardi-version", "0.8.1", "--worker", "update", "--worker",
                     "scheduler", "--network", "host", "--set", "FOO=bar baz",
                     "--memory-limit", "1024", "--no-liveness", "--agent-program", tool_path]
    # pasted back after --reset, they make the same install: nothing to change
    pasted = invoke("install", "--root", root, "--env-file", env, "--reset", *flags)
    assert pasted.exit_code == 0, pasted.output
    assert "nothing to change" in pasted.stdout


def test_reset_forgets_the_recorded_options(tmp_path, write_env):
    root, env = tmp_path / "root", write_env(CLEAN_ENV)
    invoke("install", "--root", root, "--env-file", env, "--set", "FOO=bar",
           "--network", "host")
    unit = root / UNITS / "tracardi-scheduler.service"
    assert "FOO=bar" in unit.read_text()
    reset = invoke("install", "--root", root, "--env-file", env, "--reset", "--network", "host")
    assert reset.exit_code == 0, reset.output
    assert "--reset: the options of the last install are not reused" in reset.stderr
    assert PREFIX not in reset.stderr
    assert "FOO=bar" not in unit.read_text()
    later = invoke("install", "--root", root, "--env-file", env)
    assert "--set" not in later.stderr  # forgotten for good, not only once


def test_options_for_workers_no_longer_selected_are_left_behind_with_a_note(
        tmp_path, write_env):
    root, env = tmp_path / "root", write_env(CLEAN_ENV)
    invoke("install", "--root", root, "--env-file", env, "--replicas", "scheduler=1",
           "--memory-limit", "scheduler=900", "--memory-limit", "1500")
    narrowed = invoke("install", "--root", root, "--env-file", env, "--worker", "update")
    assert narrowed.exit_code == 0, narrowed.output
    assert ("not from the last install (scheduler is not selected): --replicas scheduler=1"
            in narrowed.stderr)
    assert ("not from the last install (scheduler is not selected): --memory-limit "
            "scheduler=900") in narrowed.stderr
    assert "--memory-limit 1500" in " ".join(reused_flags(narrowed.stderr))
    assert (root / UNITS / "tracardi-update.service").exists()
    assert not (root / UNITS / "tracardi-scheduler@.service").exists()


def test_the_packaged_agent_program_wins_over_a_recorded_one_once_present(
        tmp_path, write_env, tool_path):
    root, env = tmp_path / "root", write_env(CLEAN_ENV)
    first = invoke("install", "--root", root, "--env-file", env, "--agent-program", tool_path)
    assert first.exit_code == 0, first.output
    agent = root / UNITS / "tracardi-agent.service"
    assert f"ExecStart={tool_path} agent" in agent.read_text()
    # what --root baked in from this build host is said
    assert (f"--root: the agent unit runs {tool_path}, a path of this build host that is "
            f"not in {root}") in first.stderr

    packaged = root / "usr/bin/tracardi-systemd"
    packaged.parent.mkdir(parents=True)
    packaged.write_text("#!/bin/sh\n")
    again = invoke("install", "--root", root, "--env-file", env)
    assert again.exit_code == 0, again.output
    assert (f"not from the last install (the packaged /usr/bin/tracardi-systemd is installed "
            f"and runs the agent): --agent-program {tool_path}") in again.stderr
    assert "ExecStart=/usr/bin/tracardi-systemd agent" in agent.read_text()
    assert "--root: the agent unit runs" not in again.stderr
