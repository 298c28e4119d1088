"""Validation per release: how each reads REDIS_HOST, and MySQL and Pulsar from 0.9."""

import shutil

import pytest
from samples import EXAMPLE_ENV, SECRET_LICENSE, SECRET_PASSWORD

from tracardi_systemd.spec.catalog import select_workers
from tracardi_systemd.spec.envfile import load_env_file
from tracardi_systemd.spec.problems import Severity
from tracardi_systemd.spec.validate import validate

ENV_12 = f"""\
ELASTIC_HOST=http://10.0.0.5:9200
REDIS_HOST=10.0.0.7
REDIS_PORT=6379
MYSQL_HOST=10.0.0.8
MYSQL_PORT=3306
MYSQL_PASSWORD={SECRET_PASSWORD}
PULSAR_HOST=pulsar://10.0.0.9:6650
PULSAR_API=http://10.0.0.9:8080
LOGGING_LEVEL=INFO
API_LICENSE={SECRET_LICENSE}
"""


@pytest.fixture
def check(write_env):
    """Validate `text` for a release's default selection (or the named entries)."""

    def run(text, version="1.2.0", workers=()):
        path = write_env(text)
        return path, validate(load_env_file(path), select_workers(version, list(workers)))

    return run


def errors(problems) -> list[str]:
    return [str(p) for p in problems if p.severity is Severity.ERROR]


def replaced(key: str, value: str | None, text: str = ENV_12) -> str:
    lines = [line for line in text.splitlines() if not line.startswith(f"{key}=")]
    return "\n".join(lines + ([f"{key}={value}"] if value is not None else [])) + "\n"


def test_a_clean_12_file_has_no_problems(check):
    assert check(ENV_12)[1] == []


@pytest.mark.parametrize("version", ["0.8.2", "0.9.0", "1.0.0", "1.1.0", "1.2.0"])
def test_every_release_accepts_a_complete_file(check, version):
    assert errors(check(ENV_12, version)[1]) == []


# --- the update worker's Redis port, per release ---------------------------------------------


@pytest.mark.parametrize("version", ["0.8.1", "0.8.2"])
def test_in_08x_the_update_worker_ignores_redis_port(check, version):
    path, problems = check(replaced("REDIS_PORT", "6380"), version)
    assert errors(problems) == [
        f"{path}:2: error: tracardi-update take the Redis port only from REDIS_HOST and "
        "ignore REDIS_PORT=6380: write REDIS_HOST=10.0.0.7:6380 (" + ", ".join(
            w.unit_base for w in select_workers(version) if w.needs("redis")
            and w.name != "update") + " ignore the ':6380' and keep using REDIS_PORT)"]


@pytest.mark.parametrize("version", ["0.8.1", "0.8.2"])
def test_in_08x_a_port_in_redis_host_agreeing_with_redis_port_is_fine(check, version):
    text = replaced("REDIS_HOST", "10.0.0.7:6380", replaced("REDIS_PORT", "6380"))
    assert errors(check(text, version)[1]) == []


def test_from_09_the_update_worker_takes_redis_port_like_every_other(check):
    assert errors(check(replaced("REDIS_PORT", "6380"))[1]) == []


def test_from_09_a_port_in_redis_host_is_dropped_by_the_update_worker_too(check):
    path, problems = check(replaced("REDIS_PORT", None, replaced("REDIS_HOST", "10.0.0.7:6380")))
    [message] = errors(problems)
    assert message.startswith(f"{path}:9: error: REDIS_HOST has port 6380, but ")
    assert "tracardi-update" in message and "set REDIS_PORT=6380" in message


# --- what 0.9+ needs, checked before anything changes ------------------------------------------


def test_a_081_file_fails_12_naming_what_is_missing_and_who_needs_it(check):
    text = "ELASTIC_HOST=http://10.0.0.5:9200\nREDIS_HOST=10.0.0.7\nAPI_LICENSE=abc\n"
    assert errors(check(text, "0.8.1")[1]) == []
    path, problems = check(text)
    found = errors(problems)
    assert f"{path}: error: MYSQL_HOST is not set; tracardi-init, tracardi-background-function, " \
           "tracardi-background-logger, tracardi-background-destination, tracardi-update " \
           "need(s) it: add MYSQL_HOST=... to the file" in found
    assert any(m.startswith(f"{path}: error: PULSAR_HOST is not set; tracardi-init,")
               for m in found)
    assert any(m.startswith(f"{path}: error: PULSAR_API is not set;") for m in found)


def test_the_open_source_workers_alone_need_no_pulsar(check):
    text = replaced("PULSAR_HOST", None, replaced("PULSAR_API", None))
    assert errors(check(text, workers=["update", "apm"])[1]) == []


# --- MySQL -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("10.0.0.8:3307", "MYSQL_HOST=10.0.0.8:3307 has a port, but Tracardi appends ':' and "
                      "MYSQL_PORT (now 3306) to it: write MYSQL_HOST=10.0.0.8 and MYSQL_PORT=3307"),
    ("mysql://10.0.0.8", "MYSQL_HOST=mysql://10.0.0.8 is a URL, but Tracardi puts MYSQL_SCHEMA "
                         "(mysql+aiomysql:// unless set) in front of it: write the bare host name"),
])
def test_mysql_host_must_be_a_bare_host_name(check, value, expected):
    path, problems = check(replaced("MYSQL_HOST", value))
    assert errors(problems) == [f"{path}:10: error: {expected}"]


def test_credentials_in_mysql_host_are_refused_without_repeating_them(check):
    _, problems = check(replaced("MYSQL_HOST", f"root:{SECRET_PASSWORD}@10.0.0.8"))
    [message] = errors(problems)
    assert "MYSQL_HOST holds credentials" in message and "MYSQL_PASSWORD" in message
    assert SECRET_PASSWORD not in message


def test_mysql_port_must_be_a_port(check):
    path, problems = check(replaced("MYSQL_PORT", "33o6"))
    assert errors(problems) == [f"{path}:10: error: MYSQL_PORT='33o6' is not a port number "
                                "(1-65535)"]


# --- Pulsar ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["pulsar://10.0.0.9:6650", "pulsar://pulsar",
                                   "pulsar+ssl://pulsar.example:6651/"])
def test_pulsar_host_as_a_service_url_is_fine(check, value):
    assert errors(check(replaced("PULSAR_HOST", value))[1]) == []


@pytest.mark.parametrize("value", ["10.0.0.9", "10.0.0.9:6650", "http://10.0.0.9:8080",
                                   "pulsar://10.0.0.9:66500", "pulsar://", "pulsar://h/x"])
def test_pulsar_host_must_be_a_pulsar_url(check, value):
    path, problems = check(replaced("PULSAR_HOST", value))
    assert errors(problems) == [
        f"{path}:10: error: PULSAR_HOST={value} is not a Pulsar service URL: write "
        "PULSAR_HOST=pulsar://HOST:6650 (pulsar+ssl:// for TLS)"]


def test_a_token_in_pulsar_host_is_not_repeated(check):
    _, problems = check(replaced("PULSAR_HOST", f"10.0.0.9:{SECRET_PASSWORD}@x"))
    [message] = errors(problems)
    assert SECRET_PASSWORD not in message


@pytest.mark.parametrize("value", ["10.0.0.9:8080", "pulsar://10.0.0.9:6650"])
def test_pulsar_api_must_be_an_http_url(check, value):
    path, problems = check(replaced("PULSAR_API", value))
    assert errors(problems) == [
        f"{path}:10: error: PULSAR_API={value} is not the http(s) URL of Pulsar's admin API: "
        "write PULSAR_API=http://HOST:8080"]


def test_0_8_2_checks_pulsar_host_for_its_pulsar_workers(check):
    _, problems = check(replaced("PULSAR_HOST", "10.0.0.9"), "0.8.2")
    assert [m for m in errors(problems) if "PULSAR_HOST" in m]


def test_the_bundled_12_example_validates_clean(tmp_path):
    copy = tmp_path / "env-docker-1.2.example"
    shutil.copyfile(EXAMPLE_ENV.with_name("env-docker-1.2.example"), copy)
    copy.chmod(0o600)
    assert validate(load_env_file(copy), select_workers("1.2.0")) == []
