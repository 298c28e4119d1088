"""The command line, driven through click's CliRunner (no root, nothing installed)."""

import json

import pytest
from click.testing import CliRunner
from samples import CLEAN_ENV, SECRET_ENV, SECRET_LICENSE, SECRET_PASSWORD

from tracardi_systemd.cli.main import main
from tracardi_systemd.spec.catalog import workers_for

BROKEN_ENV = "# settings\nREDIS_HOST=10.0.0.7\nexport LOGGING_LEVEL=INFO\n"


@pytest.fixture
def cli():
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return run


# --- help ----------------------------------------------------------------------------------


def test_group_help_lists_the_commands_and_typical_use(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("workers", "check", "render", "install", "status"):
        assert command in result.output
    assert "tracardi-systemd check --env-file" in result.output
    assert "--version" in result.output


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("workers", ["--tracardi-version", "[default: 0.8.1]", "--json"]),
        ("check", ["--env-file", "[required]", "--tracardi-version", "[default: 0.8.1]",
                   "--worker", "default: every worker", "Exits 0", "1 on any error"]),
        ("render", ["--env-file", "--out", "--worker", "--tracardi-version", "--image-tag",
                    "default: the Tracardi version", "--network", "default: Docker's default",
                    "--replicas", "--set", "SAVE_LOGS=no", "--installed-env-file",
                    "[default: /etc/tracardi/.env-docker]", "--docker",
                    "[default: /usr/bin/docker]", "--stop-timeout", "default: 10"]),
    ],
)
def test_subcommand_help_explains_options_and_defaults(cli, command, expected):
    result = cli(command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # undo click's line wrapping
    for fragment in expected:
        assert fragment in text, fragment


# --- workers -------------------------------------------------------------------------------


def test_workers_prints_a_table_of_the_catalog(cli):
    result = cli("workers")
    assert result.exit_code == 0
    header, *rows = result.output.splitlines()
    assert header.split() == ["UNIT", "RUNS", "IMAGE", "SETTINGS", "DEPENDS", "ON",
                              "LIVENESS", "COMMERCIAL", "DEFAULT"]
    core = "ELASTIC_HOST,REDIS_HOST,license"
    assert [row.split() for row in rows] == [
        ["tracardi-update.service", "always", "tracardi/update-worker:0.8.1", "REDIS_HOST",
         "redis", "yes", "no", "yes"],
        *([f"tracardi-{w.name}.service", "always", f"{w.image}:0.8.1", core,
           "redis,elasticsearch", "-", "yes", "yes"] for w in workers_for("0.8.1")[1:]),
        ["tracardi-heartbeat-profile-segmentation.timer", "*/30", "*", "*", "*", "*",
         "tracardi/com-heartbeat-job:0.8.1", core, "redis,elasticsearch", "-", "yes", "yes"],
        ["tracardi-heartbeat-visit-end.timer", "*/20", "*", "*", "*", "*",
         "tracardi/com-heartbeat-job:0.8.1", core, "redis,elasticsearch", "-", "yes", "yes"],
    ]


def test_workers_json(cli):
    result = cli("workers", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [d["unit"] for d in data] == [
        *(f"{w.unit_base}.service" for w in workers_for("0.8.1")),
        "tracardi-heartbeat-profile-segmentation.timer", "tracardi-heartbeat-visit-end.timer"]
    assert data[0] == {
        "name": "update", "unit": "tracardi-update.service", "kind": "service",
        "image": "tracardi/update-worker", "image_tag": "0.8.1",
        "description": "Tracardi update worker", "settings": ["REDIS_HOST"],
        "work": {"queues": ["celery"], "consume": "brpop"},
        "dependencies": ["redis"], "commercial": False,
        "liveness": workers_for("0.8.1")[0].liveness.command,
        "environment": {}, "defaults": {}, "schedule": None, "requires": [], "default": True,
    }
    assert all(d["commercial"] for d in data[1:])
    assert data[-1]["schedule"] == "*/20 * * * *"
    assert data[-1]["environment"]["QUALIFY_BY"] == "visit-end"


def test_workers_of_another_version_lists_its_catalog(cli):
    result = cli("workers", "--tracardi-version", "1.2.0", "--json")
    assert result.exit_code == 0
    data = {d["name"]: d for d in json.loads(result.stdout)}
    assert data["init"]["kind"] == "run-once"
    assert data["background-function"]["environment"] == {"CONSUMER_TYPE": "system.function"}
    assert data["background-function"]["requires"] == ["init"]
    assert {d["image_tag"] for d in data.values()} == {"1.2.x"}


def test_workers_of_an_unknown_version_fail_with_a_message(cli):
    result = cli("workers", "--tracardi-version", "9.9.9")
    assert result.exit_code == 1
    assert "error: Tracardi version '9.9.9' is not in the catalog" in result.stderr


# --- check ---------------------------------------------------------------------------------


def test_check_a_clean_file_exits_0(cli, write_env):
    path = write_env(CLEAN_ENV)
    result = cli("check", "--env-file", path)
    assert result.exit_code == 0, result.output
    assert f"{path}: ok for tracardi-update, tracardi-segmentation" in result.stdout
    assert result.stderr == ""


def test_check_a_broken_file_exits_1_and_prints_the_problem_with_its_line(cli, write_env):
    path = write_env(BROKEN_ENV)
    result = cli("check", "--env-file", path, "--worker", "update")
    assert result.exit_code == 1
    assert f"{path}:3: error: 'export LOGGING_LEVEL=...'" in result.stderr
    assert f"{path}: 1 error(s); fix them and run again" in result.stderr


def test_check_prints_warnings_and_still_exits_0(cli, write_env):
    path = write_env(CLEAN_ENV, mode=0o644)
    result = cli("check", "--env-file", path)
    assert result.exit_code == 0
    assert f"{path}: warning: the file holds secrets (API_LICENSE)" in result.stderr


def test_check_only_the_selected_workers(cli, write_env):
    path = write_env("REDIS_HOST=10.0.0.7\n")
    assert cli("check", "--env-file", path, "--worker", "update").exit_code == 0
    result = cli("check", "--env-file", path, "--worker", "tracardi-trigger")
    assert result.exit_code == 1
    assert "ELASTIC_HOST is not set; tracardi-trigger need(s) it" in result.stderr


def test_check_an_unknown_worker_fails_with_a_message(cli, write_env):
    result = cli("check", "--env-file", write_env(CLEAN_ENV), "--worker", "bogus")
    assert result.exit_code == 1
    assert "unknown worker 'bogus'" in result.stderr


def test_check_never_prints_a_secret(cli, write_env):
    path = write_env(SECRET_ENV + f"LICENSE=x{SECRET_LICENSE}\nREDIS_PORT=abc\n", mode=0o644)
    result = cli("check", "--env-file", path)
    assert result.exit_code == 1
    assert SECRET_LICENSE not in result.output
    assert SECRET_PASSWORD not in result.output


# --- render --------------------------------------------------------------------------------


def test_render_writes_the_unit_files(cli, write_env, tmp_path):
    out = tmp_path / "units"
    result = cli("render", "--env-file", write_env(CLEAN_ENV), "--out", out)
    assert result.exit_code == 0, result.output
    jobs = ("tracardi-heartbeat-profile-segmentation", "tracardi-heartbeat-visit-end")
    expected = sorted([f"{w.unit_base}.service" for w in workers_for("0.8.1")]
                      + [f"{job}.{suffix}" for job in jobs for suffix in ("service", "timer")]
                      + ["tracardi.target", "tracardi-agent.service"])
    assert sorted(p.name for p in out.iterdir()) == expected
    assert result.stdout.split() == [str(out / name) for name in expected]


def test_render_with_replicas_and_a_subset(cli, write_env, tmp_path):
    out = tmp_path / "units"
    result = cli("render", "--env-file", write_env(CLEAN_ENV), "--out", out,
                 "--worker", "update", "--worker", "trigger", "--replicas", "tracardi-trigger=2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "tracardi-agent.service", "tracardi-trigger@.service", "tracardi-update.service",
        "tracardi.target",
    ]


def test_render_never_writes_a_secret(cli, write_env, tmp_path):
    out = tmp_path / "units"
    result = cli("render", "--env-file", write_env(SECRET_ENV), "--out", out)
    assert result.exit_code == 0, result.output
    for path in out.iterdir():
        text = path.read_text()
        assert SECRET_LICENSE not in text and SECRET_PASSWORD not in text
    assert SECRET_LICENSE not in result.output


@pytest.mark.parametrize("network", ["my net", "-x", "host;x"])
def test_render_refuses_a_bad_network_naming_the_option(cli, write_env, tmp_path, network):
    out = tmp_path / "units"
    result = cli("render", "--env-file", write_env(CLEAN_ENV), "--out", out,
                 "--network", network)
    assert result.exit_code != 0
    assert "--network" in result.stderr
    assert not out.exists()


def test_render_refuses_a_secret_on_the_command_line(cli, write_env, tmp_path):
    result = cli("render", "--env-file", write_env(CLEAN_ENV), "--out", tmp_path / "units",
                 "--set", "API_LICENSE=x")
    assert result.exit_code != 0
    assert "--set" in result.stderr and "API_LICENSE looks like a secret" in result.stderr


def test_render_refuses_bad_replicas(cli, write_env, tmp_path):
    result = cli("render", "--env-file", write_env(CLEAN_ENV), "--out", tmp_path / "u",
                 "--replicas", "trigger=many")
    assert result.exit_code != 0
    assert "--replicas" in result.stderr


def test_render_with_a_broken_env_file_leaves_out_unchanged(cli, write_env, tmp_path):
    out = tmp_path / "units"
    out.mkdir()
    (out / "tracardi-update.service").write_text("old\n")
    result = cli("render", "--env-file", write_env(BROKEN_ENV), "--out", out)
    assert result.exit_code == 1
    assert ":3: error: " in result.stderr
    assert [p.name for p in out.iterdir()] == ["tracardi-update.service"]
    assert (out / "tracardi-update.service").read_text() == "old\n"
