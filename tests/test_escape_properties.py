"""Property tests: whatever text reaches a unit file, systemd reads back exactly that text.

This module holds its own reader of systemd's unit-file syntax, written from systemd's
sources (src/shared/conf-parser.c, src/basic/extract-word.c, src/basic/escape.c,
src/core/load-fragment.c, specifier and environment expansion) and independent of
`tracardi_systemd.render.escape`:

- a line whose first non-blank character is '#' or ';' is a comment, also inside a
  continuation; a line ending in an odd number of backslashes continues on the next line
  (the backslash becomes a space); key and value are stripped of " \\t\\n\\r";
- a line that is not "UTF-8 clean" for systemd (surrogates, U+FDD0..U+FDEF, U+xFFFE/F) is
  ignored by systemd: the reader refuses it;
- Exec*= lines are split by extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE): blanks
  separate words, '...' and "..." group, a backslash starts a C escape (also inside either
  quote), adjacent parts join into one word, a lone ';' separates commands; then each word
  gets '%' specifier expansion and, when the command runs, '$' expansion ($$ -> $);
- Environment= is split the same way into NAME=value words, with specifier expansion and
  no '$' expansion; EnvironmentFile= and the other settings get specifier expansion only.

The reader is strict where systemd is lenient (an unknown escape, a stray '%' or '$'): our
escaping never needs those, so meeting one means the escaping is wrong.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tracardi_systemd.render import escape
from tracardi_systemd.render.escape import UnsafeValue
from tracardi_systemd.render.units import RenderSettings, render
from tracardi_systemd.spec.catalog import select_workers

WHITESPACE = " \t\n\r"
COMMENTS = "#;"
EXEC_KEYS = {"ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost",
             "ExecReload", "ExecCondition"}


class Unreadable(AssertionError):
    """systemd would read this differently from what was meant (or not at all)."""


# --- the reader ------------------------------------------------------------------------------


def _utf8_clean(line: str) -> None:
    for char in line:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            raise Unreadable(f"line is not UTF-8 clean for systemd: {line!r}")


def directives(text: str) -> list[tuple[str | None, str, str]]:
    """(section, key, raw value) of every assignment, as config_parse() sees them."""
    if "\r" in text or "\0" in text:
        raise Unreadable("CR or NUL: systemd ends lines there")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    found: list[tuple[str | None, str, str]] = []
    section: list[str | None] = [None]

    def parse_line(line: str) -> None:
        _utf8_clean(line)
        line = line.strip(WHITESPACE)
        if not line or line[0] in COMMENTS:
            return
        if line[0] == "[":
            if line[-1] != "]":
                raise Unreadable(f"invalid section header {line!r}")
            section[0] = line[1:-1]
            return
        if "=" not in line:
            raise Unreadable(f"missing '=' in {line!r}")
        key, _, value = line.partition("=")
        found.append((section[0], key.strip(WHITESPACE), value.strip(WHITESPACE)))

    continuation: str | None = None
    for raw in lines:
        if raw.lstrip(WHITESPACE)[:1] in tuple(COMMENTS):
            continue
        line = raw if continuation is None else continuation + raw
        escaped = False
        for char in line:
            escaped = False if escaped else char == "\\"
        if escaped:
            continuation = line[:-1] + " "
            continue
        continuation = None
        parse_line(line)
    if continuation is not None:
        parse_line(continuation)
    return found


_SIMPLE_ESCAPES = {
    "a": b"\a", "b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t", "v": b"\v",
    "\\": b"\\", '"': b'"', "'": b"'", "s": b" ",
}
_HEX = "0123456789abcdefABCDEF"


def _cunescape_one(data: str, i: int) -> tuple[bytes, int]:
    """The bytes of the escape starting at data[i] (after the backslash), and its length."""
    char = data[i] if i < len(data) else ""
    if char in _SIMPLE_ESCAPES and char:
        return _SIMPLE_ESCAPES[char], 1
    if char == "x":
        digits = data[i + 1 : i + 3]
        if len(digits) == 2 and all(d in _HEX for d in digits) and int(digits, 16):
            return bytes([int(digits, 16)]), 3
    if char in ("u", "U"):
        size = 4 if char == "u" else 8
        digits = data[i + 1 : i + 1 + size]
        if len(digits) == size and all(d in _HEX for d in digits) and int(digits, 16):
            code = int(digits, 16)
            if code < 0x110000 and not 0xD800 <= code <= 0xDFFF:
                return chr(code).encode(), 1 + size
    if char and char in "01234567":
        digits = data[i : i + 3]
        if len(digits) == 3 and all(d in "01234567" for d in digits):
            value = int(digits, 8)
            if 0 < value <= 255:
                return bytes([value]), 3
    raise Unreadable(f"invalid escape \\{data[i:i + 3]!r}")


def extract_first_word(data: str, pos: int | None) -> tuple[str | None, int | None]:
    """systemd's extract_first_word(&p, &w, NULL, EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE)."""
    if pos is None:
        return None, None
    while pos < len(data) and data[pos] in WHITESPACE:
        pos += 1
    if pos >= len(data):
        return None, None
    word = bytearray()
    quote = ""
    while True:
        if pos >= len(data):
            if quote:
                raise Unreadable(f"unbalanced quoting in {data!r}")
            break
        char = data[pos]
        if char == "\\":
            if pos + 1 >= len(data):
                raise Unreadable(f"trailing backslash in {data!r}")
            decoded, length = _cunescape_one(data, pos + 1)
            word += decoded
            pos += 1 + length
        elif quote:
            if char == quote:
                quote = ""
            else:
                word += char.encode()
            pos += 1
        elif char in "'\"":
            quote = char
            pos += 1
        elif char in WHITESPACE:
            while pos < len(data) and data[pos] in WHITESPACE:
                pos += 1
            break
        else:
            word += char.encode()
            pos += 1
    try:
        text = word.decode()
    except UnicodeDecodeError as exc:
        raise Unreadable(f"word is not UTF-8: {bytes(word)!r}") from exc
    return text, (pos if pos < len(data) else None)


def words(value: str) -> list[str]:
    found, pos = [], 0
    while True:
        word, pos = extract_first_word(value, pos)
        if word is None:
            return found
        found.append(word)


def specifiers(word: str, table: dict[str, str]) -> str:
    """'%%' -> '%', known specifiers resolved; anything else refused."""
    out, i = [], 0
    while i < len(word):
        if word[i] != "%":
            out.append(word[i])
            i += 1
            continue
        follower = word[i + 1 : i + 2]
        if follower == "%":
            out.append("%")
        elif follower in table:
            out.append(table[follower])
        else:
            raise Unreadable(f"stray or unknown specifier in {word!r}")
        i += 2
    return "".join(out)


def dollars(word: str) -> str:
    """Exec-time environment expansion: '$$' -> '$'; any other '$' would expand."""
    out, i = [], 0
    while i < len(word):
        if word[i] != "$":
            out.append(word[i])
            i += 1
        elif word[i + 1 : i + 2] == "$":
            out.append("$")
            i += 2
        else:
            raise Unreadable(f"'$' that systemd would expand in {word!r}")
    return "".join(out)


def exec_argv(value: str, table: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """(prefix, argv) of one Exec*= value: exactly one command."""
    first, pos = extract_first_word(value, 0)
    if first is None or first == ";":
        raise Unreadable(f"no command in {value!r}")
    prefix = ""
    while first[:1] in ("-", "@", ":", "+", "!"):
        prefix, first = prefix + first[0], first[1:]
    argv = [specifiers(first, table)]
    while pos is not None:
        if value[pos] == ";" and value[pos + 1 : pos + 2] in ("", *WHITESPACE):
            raise Unreadable(f"a second command after ';' in {value!r}")
        if value[pos : pos + 2] == "\\;" and value[pos + 2 : pos + 3] in ("", *WHITESPACE):
            raise Unreadable(f"'\\;' in {value!r}")
        word, pos = extract_first_word(value, pos)
        if word is None:
            break
        argv.append(dollars(specifiers(word, table)))
    return prefix, tuple(argv)


def environment(value: str, table: dict[str, str]) -> tuple[tuple[str, str], ...]:
    assignments = []
    for word in words(value):
        name, sep, setting = specifiers(word, table).partition("=")
        if not sep or not name.isidentifier() or not name.isascii():
            raise Unreadable(f"invalid environment assignment {word!r}")
        assignments.append((name, setting))
    return tuple(assignments)


def read_unit(text: str, unit: str) -> list[tuple[str | None, str, object]]:
    """Every directive with its value as the service will get it."""
    instance = unit.replace("@.", "@1.")
    table = {"n": instance, "N": instance.rsplit(".", 1)[0],
             "p": instance.rsplit(".", 1)[0].split("@")[0], "i": "1"}
    result: list[tuple[str | None, str, object]] = []
    for section, key, value in directives(text):
        if key in EXEC_KEYS:
            parsed: object = exec_argv(value, table)
        elif key == "Environment":
            parsed = environment(value, table)
        else:
            parsed = specifiers(value, table)
        result.append((section, key, parsed))
    return result


def substituted(parsed: object, placeholder: str, value: str) -> object:
    if isinstance(parsed, str):
        return parsed.replace(placeholder, value)
    return type(parsed)(substituted(part, placeholder, value) for part in parsed)


# --- the reader is right about systemd's syntax -----------------------------------------------


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ('/bin/x a "b c" \'d e\'', ("/bin/x", "a", "b c", "d e")),
        ('/bin/x a"b c"d \\x41\\s\\101', ("/bin/x", "ab cd", "A A")),
        ('/bin/x "\\"q\\"" \'it\\\'s\' "%%" "$$HOME" ""', ("/bin/x", '"q"', "it's", "%", "$HOME",
                                                           "")),
        ("-/bin/x %n", ("/bin/x", "u.service")),
    ],
)
def test_the_reader_splits_exec_lines_like_systemd(line, argv):
    assert exec_argv(line, {"n": "u.service"})[1] == argv


@pytest.mark.parametrize(
    "line", ["/bin/x a ; /bin/y", '/bin/x "open', "/bin/x $HOME", "/bin/x 50%", "/bin/x \\q"]
)
def test_the_reader_refuses_what_systemd_reads_differently(line):
    with pytest.raises(Unreadable):
        exec_argv(line, {})


def test_the_reader_joins_continuations_and_skips_comment_lines():
    text = "[Service]\nExecStart=/bin/x a \\\n# note\n    b\\\\\nX=1\n"
    assert directives(text) == [
        ("Service", "ExecStart", "/bin/x a " + " " + "    b\\\\"),
        ("Service", "X", "1"),
    ]


# --- the properties ----------------------------------------------------------------------------

# Arbitrary text, with the characters that matter to systemd made likely.
SPECIAL = [*"%$\"'\\; \t\n\r#[]=", "%n", "%i", "$$", "${X}", "\\;",
           "\ufffe", "\ufdd0", "\u2028", "\x85", "\ufeff", "\U0010ffff", "\udc80"]
ANY_TEXT = st.lists(
    st.one_of(st.characters(exclude_categories=()), st.sampled_from(SPECIAL)), max_size=24,
).map("".join)
# Text that a strict check may accept (docker names, paths), with a dash of the special.
NAMEISH = st.lists(
    st.one_of(st.sampled_from(list("abcXYZ019_.-/")), st.sampled_from(SPECIAL)),
    min_size=1, max_size=20,
).map("".join)
FIELD_TEXT = st.one_of(ANY_TEXT, NAMEISH)

WORKERS = select_workers("0.8.1", ["update", "scheduler"])
BASE = RenderSettings(version="0.8.1", workers=WORKERS,
                      env_keys=("API_LICENSE", "ELASTIC_HOST", "LOGGING_LEVEL", "REDIS_HOST"),
                      replicas={"scheduler": 2}, network="basenet")
PLACEHOLDER = "PLACEHOLDER0value"
FIELDS = {
    "image_tag": lambda v: {"image_tag": v},
    "network": lambda v: {"network": v},
    "env_file": lambda v: {"installed_env_file": v},
    "worker_env": lambda v: {"worker_env": {"TRACK_DEBUG": v}},
}
PLACEHOLDERS = {"env_file": "/" + PLACEHOLDER}


def read_all(files: dict[str, str]) -> dict[str, list]:
    return {name: read_unit(text, name.replace("@.", "@1.")) for name, text in files.items()}


@functools.cache
def baseline(field: str) -> tuple[str, dict[str, list]]:
    placeholder = PLACEHOLDERS.get(field, PLACEHOLDER)
    return placeholder, read_all(render(replace(BASE, **FIELDS[field](placeholder))))


def assert_exactly_substituted(field: str, value: str) -> None:
    """Either a clear refusal, or every unit reads back as the baseline with `value` in it."""
    try:
        files = render(replace(BASE, **FIELDS[field](value)))
    except UnsafeValue as refusal:
        assert str(refusal).strip()
        return
    placeholder, expected = baseline(field)
    assume(placeholder not in value)
    if field == "image_tag" and value == "":
        value = BASE.version  # no tag means the Tracardi version's tag
    assert read_all(files) == {
        name: substituted(units, placeholder, value) for name, units in expected.items()
    }


PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("field", sorted(FIELDS))
@PROPERTY
@given(value=FIELD_TEXT)
def test_a_rendered_field_reads_back_exactly_or_is_refused(field, value):
    assert_exactly_substituted(field, value)


@PROPERTY
@given(name=FIELD_TEXT)
def test_a_worker_env_name_reaches_environment_and_docker_exactly_or_is_refused(name):
    try:
        files = render(replace(BASE, worker_env={name: "x"}))
    except UnsafeValue as refusal:
        assert str(refusal).strip()
        return
    _, expected = baseline("worker_env")
    for unit, parsed in read_all(files).items():
        assert {(s, k) for s, k, _ in parsed} == {(s, k) for s, k, _ in expected[unit]}
        if unit.endswith(".target") or "agent" in unit:
            continue
        assignments = [a for _, key, value in parsed if key == "Environment" for a in value]
        assert (name, "x") in assignments
        ((_, argv),) = [value for _, key, value in parsed if key == "ExecStart"]
        passed = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-e"]
        assert passed.count(name) == 1 or name in ("API_LICENSE", "TRACARDI_REGISTRY_TOKEN",
                                                   "TRACARDI_REGISTRY_USER")


def test_the_baselines_hold_the_placeholder_where_expected():
    for field in FIELDS:
        placeholder, units = baseline(field)
        assert placeholder in repr(units), field
    _, units = baseline("network")
    start = dict(((s, k), v) for s, k, v in units["tracardi-update.service"])[
        ("Service", "ExecStart")]
    argv = start[1]
    assert argv[argv.index("--network") + 1] == PLACEHOLDER


def refused_or(function, *args):
    try:
        return function(*args)
    except UnsafeValue as refusal:
        assert str(refusal).strip()
        return None


@settings(max_examples=400, deadline=None)
@given(value=ANY_TEXT)
def test_exec_arg_is_one_word_holding_exactly_the_value(value):
    written = refused_or(escape.exec_arg, value)
    if written is not None:
        text = f"[Service]\nExecStart=/bin/x {written} \\\n    {written} end\n"
        ((_, _, line),) = directives(text)
        assert exec_argv(line, {}) == ("", ("/bin/x", value, value, "end"))


@settings(max_examples=400, deadline=None)
@given(value=ANY_TEXT)
def test_env_assignment_holds_exactly_the_value(value):
    written = refused_or(escape.env_assignment, "NAME", value)
    if written is not None:
        ((_, key, line),) = directives(f"[Service]\nEnvironment={written}\n")
        assert key == "Environment"
        assert environment(line, {}) == (("NAME", value),)


@settings(max_examples=400, deadline=None)
@given(name=ANY_TEXT)
def test_env_assignment_refuses_names_systemd_would_not_take(name):
    written = refused_or(escape.env_assignment, name, "x")
    if written is not None:
        ((_, _, line),) = directives(f"[Service]\nEnvironment={written}\n")
        assert environment(line, {}) == ((name, "x"),)


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(ANY_TEXT, ANY_TEXT.map("/".__add__)))
def test_unit_path_holds_exactly_the_path(value):
    written = refused_or(escape.unit_path, value)
    if written is not None:
        ((_, _, line),) = directives(f"[Service]\nEnvironmentFile={written}\n")
        path = specifiers(line, {})
        assert path == value
        # systemd's own checks of EnvironmentFile= (path_simplify_and_warn)
        assert path.startswith("/") and "//" not in path and "/./" not in path
        assert all(len(part.encode()) <= 255 for part in path.split("/"))


@settings(max_examples=400, deadline=None)
@given(value=ANY_TEXT)
def test_unit_text_holds_exactly_the_text(value):
    written = refused_or(escape.unit_text, value)
    if written is not None:
        ((_, _, line),) = directives(f"[Unit]\nDescription={written}\n")
        assert specifiers(line, {}) == value


# --- systemd itself, on a few examples ---------------------------------------------------------

AWKWARD = st.lists(
    st.one_of(st.sampled_from([*"%$\"'\\; ab/", "%n", "$$", "${X}", "é", "✓"]),
              st.characters(exclude_categories=("Cs", "Cc"))),
    max_size=16,
).map("".join)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(env_file=AWKWARD.map("/srv/tracardi/".__add__), value=AWKWARD,
       tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
       network=st.sampled_from(["host", "tracardi_net", "net.1-a"]))
def test_systemd_analyze_verify_accepts_awkward_values(env_file, value, tag, network, verify,
                                                       tool_path):
    changes = {"installed_env_file": env_file, "worker_env": {"TRACK_DEBUG": value},
               "image_tag": tag, "network": network, "tool": tool_path}
    try:
        files = render(replace(BASE, **changes))
    except UnsafeValue as refusal:
        assert str(refusal).strip()
        return
    with tempfile.TemporaryDirectory() as directory:
        verify(files, Path(directory))
