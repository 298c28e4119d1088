"""Reading the env file: every line systemd's EnvironmentFile= would read differently from
python-dotenv is reported with its file and line number, never silently accepted."""

import pytest

from tracardi_systemd.spec.envfile import load_env_file
from tracardi_systemd.spec.problems import Severity

# Line 1 is a comment and line 2 a good setting, so the line numbers below are line 3.
HEAD = b"# settings\nREDIS_HOST=10.0.0.7\n"


def only_problem(env, severity=Severity.ERROR):
    assert len(env.problems) == 1, [str(p) for p in env.problems]
    problem = env.problems[0]
    assert problem.severity is severity
    return problem


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b"export FOO=bar", "systemd does not understand the 'export ' prefix",
                     id="export-prefix"),
        pytest.param(b'FOO="first\nsecond"', "spans several lines", id="multi-line-value"),
        pytest.param(b"FOO=${BAR}", "uses ${...}: dotenv expands it, systemd does not",
                     id="expansion"),
        pytest.param(b'FOO="x-${BAR}"', "uses ${...}", id="expansion-in-double-quotes"),
        pytest.param(b'FOO="abc', "cannot be parsed (an unbalanced quote?)",
                     id="unbalanced-double-quote"),
        pytest.param(b"FOO='abc", "cannot be parsed (an unbalanced quote?)",
                     id="unbalanced-single-quote"),
        pytest.param(b'FOO="a\\tb"', "backslash inside quotes", id="backslash-double-quoted"),
        pytest.param(b"FOO='a\\\\b'", "backslash inside quotes", id="escaped-backslash-quoted"),
        pytest.param(b"FOO=a\\b", "holds a backslash, which systemd removes and dotenv keeps",
                     id="backslash-unquoted"),
        pytest.param(b"FOO=bar # note", "has a ' #' comment after it", id="inline-comment"),
        pytest.param(b'FOO="bar" # note', "has text after its closing quote",
                     id="text-after-closing-quote"),
        pytest.param(b"1FOO=bar", "is not a valid variable name", id="name-digit"),
        pytest.param(b"FOO-BAR=bar", "is not a valid variable name", id="name-dash"),
        pytest.param(b"FOO", "this line has no '='", id="no-equals"),
        pytest.param(b"FOO=a\x01b", "holds a control character", id="control-char"),
        pytest.param(b"FOO=a\tb", "holds a control character", id="tab"),
        pytest.param(b"FOO=it's", "holds a quote character inside an unquoted value",
                     id="quote-inside-unquoted"),
    ],
)
def test_syntax_rule_reports_file_line_and_message(write_env, line, expected):
    path = write_env(HEAD + line + b"\nLOGGING_LEVEL=INFO\n")
    env = load_env_file(path)
    problem = only_problem(env)
    assert f"{path}:3: error: " in str(problem)
    assert expected in problem.message
    # A refused line sets nothing; the lines around it still count.
    assert "FOO" not in env.values
    assert env.values["REDIS_HOST"] == "10.0.0.7"
    assert env.values["LOGGING_LEVEL"] == "INFO"


def test_byte_order_mark_is_an_error_on_line_1_and_the_rest_still_parses(write_env):
    path = write_env(b"\xef\xbb\xbfREDIS_HOST=10.0.0.7\n")
    env = load_env_file(path)
    problem = only_problem(env)
    assert f"{path}:1: error: " in str(problem)
    assert "byte-order mark (BOM)" in problem.message
    assert env.values == {"REDIS_HOST": "10.0.0.7"}


def test_crlf_line_ends_are_an_error_on_the_first_such_line(write_env):
    path = write_env(b"# settings\nREDIS_HOST=10.0.0.7\r\nLOGGING_LEVEL=INFO\r\n")
    env = load_env_file(path)
    problem = only_problem(env)
    assert f"{path}:2: error: " in str(problem)
    assert "Windows (CRLF) line ends" in problem.message
    assert "sed -i" in problem.message
    assert env.values == {"REDIS_HOST": "10.0.0.7", "LOGGING_LEVEL": "INFO"}


def test_non_utf8_file_is_an_error_at_the_bad_byte_line(write_env):
    path = write_env(HEAD + b"FOO=caf\xe9\n")
    env = load_env_file(path)
    problem = only_problem(env)
    assert f"{path}:3: error: " in str(problem)
    assert "not valid UTF-8" in problem.message


def test_duplicate_key_is_a_warning_naming_both_lines_and_the_last_wins(write_env):
    path = write_env(HEAD + b"REDIS_HOST=10.0.0.8\n")
    env = load_env_file(path)
    problem = only_problem(env, Severity.WARNING)
    assert f"{path}:3: warning: " in str(problem)
    assert "REDIS_HOST is set again (first on line 2)" in problem.message
    assert env.values["REDIS_HOST"] == "10.0.0.8"
    assert env.line_of("REDIS_HOST") == 3


def test_missing_file_is_an_error_not_an_exception(tmp_path):
    env = load_env_file(tmp_path / "missing")
    problem = only_problem(env)
    assert "cannot read the env file" in problem.message


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"FOO=bar", "bar"),
        (b"FOO=", ""),
        (b"FOO = bar", "bar"),
        (b"FOO=a b c", "a b c"),
        (b"FOO=a#b", "a#b"),
        (b"FOO=a$b", "a$b"),
        (b'FOO="a b # c"', "a b # c"),
        (b"FOO='${BAR}'", "${BAR}"),
        (b"FOO='a\\b'", "a\\b"),  # systemd and dotenv both keep it in single quotes
        (b'FOO="it\'s"', "it's"),
        ("FOO=café ✓".encode(), "café ✓"),
    ],
)
def test_common_syntax_is_accepted_with_the_value_both_parsers_agree_on(write_env, line, value):
    env = load_env_file(write_env(HEAD + line + b"\n"))
    assert env.problems == []
    assert env.values["FOO"] == value
    assert env.line_of("FOO") == 3


def test_comments_and_blank_lines_are_skipped_and_line_numbers_kept(write_env):
    env = load_env_file(write_env(b"# a\n\n   \n# b\nFOO=1\n\nBAR=2\n"))
    assert env.problems == []
    assert env.values == {"FOO": "1", "BAR": "2"}
    assert (env.line_of("FOO"), env.line_of("BAR")) == (5, 7)


def test_line_numbers_count_blank_lines_before_a_setting_or_a_broken_line(write_env):
    path = write_env(b"FOO=1\n\n\nBAR=2\n\n\nexport BAZ=3\n")
    env = load_env_file(path)
    assert env.line_of("BAR") == 4
    assert f"{path}:7: error: " in str(only_problem(env))
