"""Validation of the settings against what Tracardi 0.8.1's workers really read."""

import shutil

import pytest
from samples import CLEAN_ENV, EXAMPLE_ENV, SECRET_ENV, SECRET_LICENSE, SECRET_PASSWORD

from tracardi_systemd.spec.catalog import select_workers, workers_for
from tracardi_systemd.spec.envfile import load_env_file
from tracardi_systemd.spec.problems import Severity, has_errors
from tracardi_systemd.spec.validate import validate

ALL = workers_for("0.8.1")
CORE_OK = "ELASTIC_HOST=http://10.0.0.5:9200\nLOGGING_LEVEL=INFO\nAPI_LICENSE=abc\n"


@pytest.fixture
def check(write_env):
    """Validate `text` for the named workers (none by default, () for all of them)."""

    def run(text, workers=None, mode=0o600):
        path = write_env(text, mode=mode)
        selected = () if workers is None else select_workers("0.8.1", list(workers))
        return path, validate(load_env_file(path), selected)

    return run


def the_problem(problems, severity=Severity.ERROR):
    assert len(problems) == 1, [str(p) for p in problems]
    assert problems[0].severity is severity
    return problems[0]


# --- clean files -------------------------------------------------------------------------


def test_a_clean_file_has_no_problems(check):
    _, problems = check(CLEAN_ENV, workers=())
    assert problems == []


def test_the_bundled_example_validates_clean(tmp_path):
    copy = tmp_path / "env-docker.example"
    shutil.copyfile(EXAMPLE_ENV, copy)
    copy.chmod(0o600)
    assert validate(load_env_file(copy), ALL) == []


# --- required settings -------------------------------------------------------------------


def test_the_update_worker_needs_only_redis_host(check):
    _, problems = check("REDIS_HOST=10.0.0.7\n", workers=["update"])
    assert problems == []


def test_core_workers_need_elastic_and_redis_and_get_logging_level_info(check):
    path, problems = check("API_LICENSE=abc\n", workers=["scheduler", "trigger"])
    errors = sorted(str(p) for p in problems if p.severity is Severity.ERROR)
    assert all(m.startswith(f"{path}: error: ") for m in errors)
    for name in ("ELASTIC_HOST", "REDIS_HOST"):
        assert any(
            f"{name} is not set; tracardi-scheduler, tracardi-trigger need(s) it" in m
            for m in errors
        ), errors
    assert len(errors) == 2
    warning = the_problem([p for p in problems if p.severity is Severity.WARNING],
                          Severity.WARNING)
    assert "LOGGING_LEVEL is not set: the workers get LOGGING_LEVEL=info" in warning.message


def test_the_update_worker_alone_needs_no_logging_level(check):
    assert check("REDIS_HOST=r\n", workers=["update"])[1] == []


def test_an_empty_required_setting_is_reported_on_its_line(check):
    path, problems = check("# x\nREDIS_HOST=\n", workers=["update"])
    assert f"{path}:2: error: REDIS_HOST is not set" in str(the_problem(problems))


def test_commercial_workers_need_a_license(check):
    path, problems = check("REDIS_HOST=r\n" + CORE_OK.replace("API_LICENSE=abc\n", ""),
                           workers=["update", "segmentation"])
    problem = the_problem(problems)
    assert str(problem).startswith(f"{path}: error: no license: ")
    assert "(tracardi-segmentation)" in problem.message
    assert "tracardi-update" not in problem.message


@pytest.mark.parametrize("name", ["API_LICENSE", "LICENSE"])
def test_the_license_may_be_api_license_or_license(check, name):
    _, problems = check(f"REDIS_HOST=r\nELASTIC_HOST=http://e:9200\nLOGGING_LEVEL=INFO\n{name}=x\n",
                        workers=["segmentation"])
    assert problems == []


def test_license_and_api_license_that_differ_are_an_error(check):
    path, problems = check("REDIS_HOST=r\n" + CORE_OK + "LICENSE=other\n",
                           workers=["segmentation"])
    problem = the_problem(problems)
    assert f"{path}:4: error: " in str(problem)  # the API_LICENSE line
    assert "LICENSE and API_LICENSE are both set and differ" in problem.message


def test_license_and_api_license_that_agree_are_fine(check):
    _, problems = check("REDIS_HOST=r\n" + CORE_OK + "LICENSE=abc\n", workers=["segmentation"])
    assert problems == []


# --- Redis ---------------------------------------------------------------------------------


def test_core_workers_ignore_a_port_in_redis_host(check):
    path, problems = check("REDIS_HOST=10.0.0.7:6380\n" + CORE_OK, workers=["scheduler"])
    problem = the_problem(problems)
    assert f"{path}:1: error: " in str(problem)
    assert "REDIS_HOST has port 6380" in problem.message
    assert ("tracardi-scheduler drop everything after ':' and take the port from REDIS_PORT "
            "(now 6379): set REDIS_PORT=6380") in problem.message


def test_a_port_in_redis_host_that_matches_redis_port_is_fine(check):
    _, problems = check("REDIS_HOST=10.0.0.7:6380\nREDIS_PORT=6380\n" + CORE_OK, workers=())
    assert problems == []


def test_the_update_worker_needs_a_non_default_port_inside_redis_host(check):
    path, problems = check("REDIS_HOST=10.0.0.7\nREDIS_PORT=6380\n", workers=["update"])
    problem = the_problem(problems)
    assert f"{path}:1: error: " in str(problem)
    assert "tracardi-update take the Redis port only from REDIS_HOST" in problem.message
    assert "write REDIS_HOST=10.0.0.7:6380" in problem.message


def test_update_and_core_workers_together_are_told_apart(check):
    _, problems = check("REDIS_HOST=10.0.0.7\nREDIS_PORT=6380\n" + CORE_OK,
                        workers=["update", "scheduler"])
    assert "(tracardi-scheduler ignore the ':6380' and keep using REDIS_PORT)" in (
        the_problem(problems).message)


def test_the_update_worker_is_fine_with_the_default_port(check):
    _, problems = check("REDIS_HOST=10.0.0.7\nREDIS_PORT=6379\n", workers=["update"])
    assert problems == []


def test_a_non_default_port_without_the_update_worker_is_fine(check):
    _, problems = check("REDIS_HOST=10.0.0.7\nREDIS_PORT=6380\n" + CORE_OK,
                        workers=["scheduler"])
    assert problems == []


def test_rediss_is_an_error_saying_what_each_kind_of_worker_does_with_it(check):
    path, problems = check("REDIS_HOST=rediss://10.0.0.7\n" + CORE_OK,
                           workers=["update", "scheduler", "trigger"])
    problem = the_problem(problems)
    assert f"{path}:1: error: " in str(problem)
    assert "tracardi-update crashes at start" in problem.message
    assert ("tracardi-scheduler, tracardi-trigger strips the scheme and connects in plain TCP "
            "without TLS") in problem.message


@pytest.mark.parametrize("host", ["redis://10.0.0.7", "REDIS://10.0.0.7", "redis.internal"])
def test_redis_scheme_and_plain_host_are_accepted(check, host):
    _, problems = check(f"REDIS_HOST={host}\n", workers=["update"])
    assert problems == []


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "63 79"])
def test_a_bad_redis_port_is_an_error(check, port):
    path, problems = check(f"REDIS_HOST=r\nREDIS_PORT={port}\n", workers=["update"])
    problem = the_problem(problems)
    assert f"{path}:2: error: REDIS_PORT={port!r} is not a port number (1-65535)" in str(problem)


def test_a_non_numeric_port_inside_redis_host_is_an_error(check):
    path, problems = check("REDIS_HOST=r:abc\n", workers=["update"])
    assert f"{path}:1: error: " in str(the_problem(problems))
    assert "'abc' after ':' is not a port number" in problems[0].message


def test_credentials_inside_redis_host_are_an_error_and_not_repeated(check):
    path, problems = check(f"REDIS_HOST=redis://user:{SECRET_PASSWORD}@r:6380\n",
                           workers=["update"])
    problem = the_problem(problems)
    assert f"{path}:1: error: REDIS_HOST holds credentials" in str(problem)
    assert "REDIS_PASSWORD" in problem.message
    assert SECRET_PASSWORD not in str(problem)


# --- Elasticsearch ---------------------------------------------------------------------------


def test_a_list_of_elastic_urls_is_accepted(check):
    _, problems = check(
        "ELASTIC_HOST=http://10.0.0.5:9200, https://es.example.com,http://[::1]:9200\n"
    )
    assert problems == []


@pytest.mark.parametrize("entry", ["ftp://10.0.0.6", "http://", "http://es:99999", "es:x"])
def test_an_elastic_entry_that_is_not_an_http_url_is_an_error(check, entry):
    path, problems = check(f"# es\nELASTIC_HOST=http://10.0.0.5:9200,{entry}\n")
    problem = the_problem(problems)
    assert (f"{path}:2: error: ELASTIC_HOST entry {entry!r} is neither an http(s) URL nor a "
            "host name") in str(problem)


@pytest.mark.parametrize("settings", [
    "ELASTIC_HOST=elastic-svc\n",
    "ELASTIC_HOST=elastic-svc\nELASTIC_SCHEME=https\n",
    "ELASTIC_HOST=elastic-svc,10.0.0.6:9201\nELASTIC_SCHEME=https\nELASTIC_PORT=9243\n",
])
def test_helm_style_elastic_settings_are_accepted(check, settings):
    assert check(settings)[1] == []


@pytest.mark.parametrize(("settings", "line", "message"), [
    ("ELASTIC_HOST=es\nELASTIC_SCHEME=ftp\n", 2, "ELASTIC_SCHEME='ftp': write http or https"),
    ("ELASTIC_HOST=es\nELASTIC_PORT=9x\n", 2, "ELASTIC_PORT='9x' is not a port number"),
])
def test_bad_helm_style_elastic_settings_are_errors(check, settings, line, message):
    path, problems = check(settings)
    assert str(problems[0]).startswith(f"{path}:{line}: error: {message}")


def test_elastic_auth_username_without_password_is_a_warning(check):
    path, problems = check("ELASTIC_HTTP_AUTH_USERNAME=elastic\n")
    problem = the_problem(problems, Severity.WARNING)
    assert f"{path}:1: warning: " in str(problem)
    assert ("ELASTIC_HTTP_AUTH_USERNAME is set but ELASTIC_HTTP_AUTH_PASSWORD is not"
            in problem.message)


def test_elastic_auth_password_without_username_is_a_warning(check):
    path, problems = check(f"ELASTIC_HTTP_AUTH_PASSWORD={SECRET_PASSWORD}\n")
    problem = the_problem(problems, Severity.WARNING)
    assert f"{path}:1: warning: ELASTIC_HTTP_AUTH_PASSWORD is set but" in str(problem)


def test_elastic_auth_with_both_is_fine(check):
    _, problems = check(
        f"ELASTIC_HTTP_AUTH_USERNAME=e\nELASTIC_HTTP_AUTH_PASSWORD={SECRET_PASSWORD}\n"
    )
    assert problems == []


@pytest.mark.parametrize("value", ["true", "True", "1", "on"])
def test_elastic_verify_certs_true_is_a_warning_because_only_yes_means_true(check, value):
    path, problems = check(f"# tls\nELASTIC_VERIFY_CERTS={value}\n")
    problem = the_problem(problems, Severity.WARNING)
    assert f"{path}:2: warning: ELASTIC_VERIFY_CERTS={value} means false to Tracardi" in str(
        problem
    )


@pytest.mark.parametrize("value", ["yes", "no", "false"])
def test_elastic_verify_certs_yes_or_no_is_fine(check, value):
    _, problems = check(f"ELASTIC_VERIFY_CERTS={value}\n")
    assert problems == []


# --- placeholders and levels ----------------------------------------------------------------


def test_the_redis_ip_placeholder_is_an_error(check):
    path, problems = check("REDIS_HOST=<redis-ip>\n", workers=["update"])
    problem = the_problem(problems)
    assert f"{path}:1: error: REDIS_HOST still holds the placeholder <redis-ip>" in str(problem)


@pytest.mark.parametrize("value", ["paste license here", "<paste license here>"])
def test_the_license_placeholder_is_an_error_and_masked(check, value):
    path, problems = check(f"REDIS_HOST=r\nAPI_LICENSE={value}\n", workers=["update"])
    problem = the_problem(problems)
    assert f"{path}:2: error: API_LICENSE still holds the placeholder <hidden, " in str(problem)
    assert value not in problem.message


def test_a_bad_logging_level_is_an_error(check):
    path, problems = check("LOGGING_LEVEL=verbose\n")
    problem = the_problem(problems)
    assert f"{path}:1: error: LOGGING_LEVEL='VERBOSE' is not a level Tracardi knows" in str(
        problem)
    assert "DEBUG, INFO, WARNING, WARN, ERROR" in problem.message


@pytest.mark.parametrize("level", ["DEBUG", "info", "Warning", "ERROR", "WARN", "warn"])
def test_logging_levels_are_accepted_in_any_case(check, level):
    assert check(f"LOGGING_LEVEL={level}\n")[1] == []


def test_critical_is_accepted_with_what_tracardi_makes_of_it(check):
    problem = the_problem(check("LOGGING_LEVEL=critical\n")[1], Severity.WARNING)
    assert "Tracardi maps it to WARNING" in problem.message


# --- permissions -----------------------------------------------------------------------------


def test_a_license_in_a_file_others_can_read_is_a_warning(check):
    path, problems = check(CLEAN_ENV, workers=(), mode=0o644)
    problem = the_problem(problems, Severity.WARNING)
    assert str(problem).startswith(f"{path}: warning: the file holds secrets (API_LICENSE)")
    assert "mode 0644" in problem.message and f"chmod 600 {path}" in problem.message
    assert not has_errors(problems)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_file_gets_no_permission_warning(check, mode):
    assert check(CLEAN_ENV, workers=(), mode=mode)[1] == []


def test_a_readable_file_without_secrets_gets_no_permission_warning(check):
    assert check("REDIS_HOST=r\n", workers=["update"], mode=0o644)[1] == []


# --- order and secrecy ------------------------------------------------------------------------


def test_syntax_problems_come_before_setting_problems(check):
    _, problems = check("LOGGING_LEVEL=verbose\nexport FOO=1\n")
    assert [p.line for p in problems] == [2, 1]


# Every rule fires on this file, with recognisable secrets in the secret settings, in URL
# credentials and on broken lines.
EVERY_RULE = f"""\
export API_LICENSE={SECRET_LICENSE}
API_LICENSE="{SECRET_LICENSE}
API_LICENSE={SECRET_LICENSE} # note
API_LICENSE={SECRET_LICENSE}\\x
API_LICENSE="{SECRET_LICENSE}" # note
API_LICENSE={SECRET_LICENSE}\x01
API_LICENSE=${{{SECRET_LICENSE}}}
{SECRET_LICENSE}
1{SECRET_LICENSE}=x
API_LICENSE={SECRET_LICENSE}'
LICENSE=paste license here {SECRET_LICENSE}
API_LICENSE=<{SECRET_LICENSE}>
ELASTIC_HTTP_AUTH_PASSWORD={SECRET_PASSWORD}
REDIS_PASSWORD={SECRET_PASSWORD}
ELASTIC_HOST=http://user:{SECRET_PASSWORD}@es:9200,user:{SECRET_PASSWORD}@es:9200
ELASTIC_HOST=http://user:{SECRET_PASSWORD}@[es
REDIS_HOST=redis://user:{SECRET_PASSWORD}@r:6380
REDIS_PORT=6390
ELASTIC_VERIFY_CERTS=true
LOGGING_LEVEL=loud
API_LICENSE={SECRET_LICENSE}
API_LICENSE={SECRET_LICENSE}
"""


@pytest.mark.parametrize("content", [EVERY_RULE, EVERY_RULE.replace("\n", "\r\n"),
                                     "\ufeff" + SECRET_ENV + "LICENSE=different\n"])
def test_no_message_ever_contains_a_secret_value(check, content):
    _, problems = check(content, workers=(), mode=0o644)
    assert len(problems) >= 3
    for problem in problems:
        assert SECRET_LICENSE not in str(problem)
        assert SECRET_PASSWORD not in str(problem)
