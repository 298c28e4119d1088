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
        ("check", ["--env-file", "[required]", "--tracardi-version", "the env file decides",
                   "--worker", "default: every worker", "Exits 0", "1 on any error"]),
        ("render", ["--env-file", "--out", "--worker", "--tracardi-version", "--image-tag",
                    "default: the Tracardi version", "--network", "default: Docker's default",
                    "--replicas", "--set", "SAVE_LOGS=no", "--installed-env-file",
                    "[default: /etc/tracardi/.env-docker]", "--docker",
                    "[default: /usr/bin/docker]", "--stop-timeout", "default: 10",
                    "--metrics-dir", "default: /var/lib/prometheus/node-exporter",
                    "--on-failure", "failed unit's name as its instance"]),
        ("agent", ["--metrics-dir", "--on-failure", "textfile directory"]),
        ("events", ["--since", "--unit", "--json", "the newest last"]),
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
    assert result.exit_code == 2
    assert "error: Tracardi version '9.9.9' is not in the catalog" in result.stderr


# --- check ---------------------------------------------------------------------------------


def test_check_a_clean_file_exits_0(cli, write_env):
    path = write_env(CLEAN_ENV)
    result = cli("check", "--env-file", path)
    assert result.exit_code == 0, result.output
    assert f"{path}: ok for tracardi-update, tracardi-segmentation" in result.stdout
    # the release is said aloud, with why: nothing else
    assert result.stderr == ("Tracardi 0.8.1, as the env file decides: it fits no other "
                             "release (0.8.2 needs PULSAR_HOST; 0.9.0 to 1.2.0 need MYSQL_HOST, "
                             "PULSAR_HOST, PULSAR_API); --tracardi-version chooses another\n")


def test_check_a_broken_file_exits_1_and_prints_the_problem_with_its_line(cli, write_env):
    path = write_env(BROKEN_ENV)
    result = cli("check", "--env-file", path, "--worker", "update", "--tracardi-version", "0.8.1")
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
    version = ("--tracardi-version", "0.8.1")
    assert cli("check", "--env-file", path, "--worker", "update", *version).exit_code == 0
    result = cli("check", "--env-file", path, "--worker", "tracardi-trigger", *version)
    assert result.exit_code == 1
    assert "ELASTIC_HOST is not set; tracardi-trigger need(s) it" in result.stderr


def test_check_an_unknown_worker_fails_with_a_message(cli, write_env):
    result = cli("check", "--env-file", write_env(CLEAN_ENV), "--worker", "bogus")
    assert result.exit_code == 2
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
    assert result.exit_code == 2  # an option, not the env file
    assert "--network" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("command", ["render", "agent"])
def test_an_on_failure_that_is_not_a_unit_is_refused_naming_the_option(cli, write_env,
                                                                       tmp_path, command):
    out = tmp_path / "units"
    args = ["--env-file", write_env(CLEAN_ENV), *(["--out", out] if command == "render" else [])]
    result = cli(command, *args, "--on-failure", "notify; rm -rf /")
    assert result.exit_code == 2
    assert "--on-failure" in result.stderr and "is not a unit name" in result.stderr
    assert not out.exists()


def test_render_with_on_failure_writes_it_into_every_service(cli, write_env, tmp_path):
    out = tmp_path / "units"
    result = cli("render", "--env-file", write_env(CLEAN_ENV), "--out", out,
                 "--on-failure", "tracardi-notify@.service")
    assert result.exit_code == 0, result.output
    for path in out.glob("*.service"):
        assert "\nOnFailure=tracardi-notify@%n.service\n" in path.read_text(), path


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
    result = cli("render", "--env-file", write_env(BROKEN_ENV), "--out", out,
                 "--tracardi-version", "0.8.1")
    assert result.exit_code == 1
    assert ":3: error: " in result.stderr
    assert [p.name for p in out.iterdir()] == ["tracardi-update.service"]
    assert (out / "tracardi-update.service").read_text() == "old\n"


# --- usage errors, --pull, errors under --json ---------------------------------------------


def test_pull_alone_means_always_and_takes_a_policy_as_upgrade_does(cli):
    from tracardi_systemd.cli.main import to_pull

    class Host:
        def has_image(self, image):
            return image.startswith("here/")

    images = ["here/a:1", "away/b:1"]
    assert to_pull(Host(), images, "always") == images
    assert to_pull(Host(), images, "missing") == ["away/b:1"]
    assert to_pull(Host(), images, "never") == []
    for command in ("install", "upgrade"):
        text = " ".join(cli(command, "--help").output.split())
        assert "--pull [always|missing|never]" in text
        assert "always (also `--pull` alone)" in text


@pytest.mark.parametrize("pull", [["--pull"], ["--pull", "missing"]])
def test_pull_alone_is_parsed_as_a_policy(cli, write_env, tmp_path, pull):
    result = cli("install", "--root", tmp_path / "root", "--env-file", write_env(CLEAN_ENV),
                 *pull)
    assert result.exit_code == 2
    assert "--start and --pull act on the live system" in result.stderr


def test_errors_under_json_are_json(cli, write_env, tmp_path):
    broken = cli("install", "--root", tmp_path / "root", "--json", "--tracardi-version",
                 "0.8.1", "--worker", "update", "--env-file", write_env(BROKEN_ENV))
    assert broken.exit_code == 1
    answer = json.loads(broken.stdout)
    assert answer["exit_status"] == 1
    assert answer["error"].endswith("1 error(s); fix them and run again")
    assert len(answer["problems"]) == 1 and ":3: error: " in answer["problems"][0]
    usage = cli("install", "--root", tmp_path / "root", "--json", "--worker", "bogus",
                "--tracardi-version", "0.8.1", "--env-file", write_env(CLEAN_ENV))
    assert usage.exit_code == 2
    assert "unknown worker 'bogus'" in json.loads(usage.stdout)["error"]
