"""Which Tracardi release the tool works on: named, reused, or decided by the env file, and
said aloud; an env file of another release is an error naming its settings."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from samples import CLEAN_ENV, ROOT

from tracardi_systemd.cli.main import main
from tracardi_systemd.spec.envfile import load_env_file
from tracardi_systemd.spec.releases import decide

ENV_12 = (ROOT / "examples" / "env-docker-1.2.example").read_text()


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_0_8_1_file_decides_its_release_and_says_why(write_env):
    decision = decide(load_env_file(write_env(CLEAN_ENV)).values)
    assert decision.version == "0.8.1"
    assert "0.8.2 needs PULSAR_HOST" in decision.reason


def test_a_1_x_file_fits_several_releases_and_check_asks_which(write_env):
    result = invoke("check", "--env-file", str(write_env(ENV_12)))
    assert result.exit_code == 2
    assert "no --tracardi-version, and the env file fits Tracardi 0.9.0 to 1.2.0" in result.stderr
    ok = invoke("check", "--env-file", str(write_env(ENV_12)), "--tracardi-version", "1.2.0")
    assert ok.exit_code == 0, ok.output
    assert "tracardi-background-function" in ok.stdout


def test_1_x_settings_with_0_8_1_asked_is_an_error_naming_them(write_env):
    path = write_env(ENV_12)
    result = invoke("check", "--env-file", str(path), "--tracardi-version", "0.8.1")
    assert result.exit_code == 1
    assert (f"{path}:10: error: MYSQL_HOST, MYSQL_PORT, MYSQL_USERNAME, MYSQL_DATABASE, "
            "PULSAR_HOST, PULSAR_API: settings that Tracardi 0.8.2 to 1.2.0 read, not "
            "0.8.1: is the file for another release?") in result.stderr
    assert "ok for" not in result.stdout


def test_a_first_install_without_a_release_the_file_does_not_decide_writes_nothing(
        write_env, tmp_path):
    root = tmp_path / "image"
    result = invoke("install", "--root", str(root), "--env-file", str(write_env(ENV_12)))
    assert result.exit_code == 2
    assert "--tracardi-version" in result.stderr
    assert not root.exists() or not any(root.rglob("*.service"))


def test_install_records_the_release_the_file_decided_and_reuses_it(write_env, tmp_path):
    root = tmp_path / "image"
    first = invoke("install", "--root", str(root), "--env-file", str(write_env(CLEAN_ENV)))
    assert first.exit_code == 0, first.output
    assert "Tracardi 0.8.1, as the env file decides" in first.stderr
    again = invoke("install", "--root", str(root))
    assert again.exit_code == 0, again.output
    assert "from the last install (--reset forgets them): --tracardi-version 0.8.1" \
        in again.stderr
    assert "as the env file decides" not in again.stderr


@pytest.mark.parametrize(("typo", "meant"), [("REDIS_HOTS", "REDIS_HOST"),
                                             ("API_LICENCE", "API_LICENSE"),
                                             ("LOGING_LEVEL", "LOGGING_LEVEL")])
def test_an_unknown_name_is_a_warning_with_the_nearest_setting(write_env, typo, meant):
    path = write_env(CLEAN_ENV + f"{typo}=x\n")
    result = invoke("check", "--env-file", str(path))
    assert result.exit_code == 0
    assert f"{path}:7: warning: {typo}: did you mean {meant}?" in result.stderr


def test_the_nearest_setting_is_one_of_the_chosen_release(write_env):
    """MYSQL_PORT is a 1.x setting: a 1.2 file's typo of it is named, a 0.8.1 file's is not."""
    path = write_env(ENV_12 + "MYSQL_PROT=3306\n")
    result = invoke("check", "--env-file", str(path), "--tracardi-version", "1.2.0")
    assert "MYSQL_PROT: did you mean MYSQL_PORT?" in result.stderr
    old = invoke("check", "--env-file", str(write_env(CLEAN_ENV + "MYSQL_PROT=3306\n")))
    assert "MYSQL_PROT is no setting Tracardi 0.8.1 reads" in old.stderr


def test_a_documented_optional_setting_is_no_warning(write_env):
    text = CLEAN_ENV + "ELASTIC_QUERY_TIMEOUT=30\nREDIS_PASSWORD=x\nSAVE_LOGS=no\n"
    result = invoke("check", "--env-file", str(write_env(text)))
    assert result.exit_code == 0
    assert "warning" not in result.stderr


def test_a_missing_env_file_is_one_error(tmp_path: Path):
    result = invoke("check", "--env-file", str(tmp_path / "nope"), "--tracardi-version", "0.8.1")
    assert result.exit_code == 1
    assert [line for line in result.stderr.splitlines() if "error" in line] == [
        f"{tmp_path / 'nope'}: error: cannot read the env file: No such file or directory",
        f"error: {tmp_path / 'nope'}: give the path of a readable env file"]


# --- loopback addresses and the containers' network ----------------------------------------

LOOPBACK_CASES = [("REDIS_HOST=10.0.0.7", "REDIS_HOST=127.0.0.1", "REDIS_HOST"),
                  ("REDIS_HOST=10.0.0.7", "REDIS_HOST=redis://localhost:6379", "REDIS_HOST"),
                  ("REDIS_HOST=10.0.0.7", "REDIS_HOST=127.1.2.3", "REDIS_HOST"),
                  ("ELASTIC_HOST=http://10.0.0.5:9200,http://10.0.0.6:9200",
                   "ELASTIC_HOST=http://10.0.0.5:9200,http://localhost:9200", "ELASTIC_HOST"),
                  ("ELASTIC_HOST=http://10.0.0.5:9200,http://10.0.0.6:9200",
                   "ELASTIC_HOST=http://[::1]:9200", "ELASTIC_HOST")]


@pytest.mark.parametrize(("old", "new", "key"), LOOPBACK_CASES)
def test_a_loopback_address_on_a_bridge_network_is_an_error_saying_what_to_use(
        write_env, tmp_path, old, new, key):
    path = write_env(CLEAN_ENV.replace(old, new))
    result = invoke("render", "--env-file", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert (f"error: {key}={new.partition('=')[2]} is a loopback address, which on Docker's "
            "default bridge network is the worker's own container") in result.stderr
    assert "--network host" in result.stderr
    assert not (tmp_path / "out").exists()
    named = invoke("check", "--env-file", str(path), "--network", "tracardi")
    assert "on the network 'tracardi' is the worker's own container" in named.stderr
    on_host = invoke("render", "--env-file", str(path), "--out", str(tmp_path / "out"),
                     "--network", "host")
    assert on_host.exit_code == 0, on_host.output


def test_the_probe_reaches_what_the_container_reaches():
    """A service listening on the host's loopback is down for a worker on a bridge network."""
    import socket

    from tracardi_systemd.spec.addresses import dependencies_of, probe
    from tracardi_systemd.spec.catalog import workers_for

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        settings = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(listener.getsockname()[1])}
        scheduler = {w.name: w for w in workers_for("0.8.1")}["scheduler"]
        on_host = dependencies_of(scheduler, settings, "host")
        on_bridge = dependencies_of(scheduler, settings, None)
        assert list(probe(on_host).values()) == [True]
        assert list(probe(on_bridge).values()) == [False]


# --- what install --json says to restart -----------------------------------------------------


def test_install_json_names_the_units_to_restart_never_init_for_settings(write_env, tmp_path):
    import json

    root, env = tmp_path / "root", write_env(ENV_12)
    first = invoke("install", "--root", str(root), "--env-file", str(env), "--json",
                   "--tracardi-version", "1.2.0", "--network", "host")
    assert json.loads(first.stdout)["restart"] == []  # nothing ran before
    env.write_text(ENV_12.replace("LOGGING_LEVEL=INFO", "LOGGING_LEVEL=DEBUG"))
    settings = json.loads(invoke("install", "--root", str(root), "--env-file", str(env),
                                 "--json").stdout)
    assert settings["changed"] is True
    assert settings["restart"] == [
        "tracardi-background-function.service", "tracardi-background-logger.service",
        "tracardi-background-destination.service", "tracardi-apm.service",
        "tracardi-update.service"]
    tagged = json.loads(invoke("install", "--root", str(root), "--env-file", str(env),
                               "--json", "--image-tag", "1.2.7").stdout)
    assert tagged["restart"][0] == "tracardi-init.service"  # its own file changed: re-run
    again = json.loads(invoke("install", "--root", str(root), "--env-file", str(env),
                              "--json").stdout)
    assert again == {"changed": False, "lines": ["nothing to change"], "restart": []}
