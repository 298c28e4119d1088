"""Escaping values for systemd unit files.

Each function is a named Jinja2 filter that returns Escaped text, and the templates'
environment refuses to write anything else (`only_escaped`, its finalize): every value goes
through one of them, so no value can add a directive, split an argument, or be expanded by
systemd (`%` specifiers, `$` variables). Values systemd cannot hold safely (newlines,
control characters, text that is not UTF-8) are refused with UnsafeValue. Commands are
built as argv lists elsewhere and written by one serializer, `exec_command`.
"""

from __future__ import annotations

import functools
import posixpath
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence

from tracardi_systemd.spec.envfile import is_env_name, is_noncharacter

MAX_VALUE_LENGTH = 1024
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
_PROGRAM = re.compile(r"/[A-Za-z0-9_./+-]*")


_SPECIFIED = re.compile(r"(?:[A-Za-z0-9_.=@-]|%[nNpi])+")


class UnsafeValue(ValueError):
    """A value that cannot be written into a unit file."""


class Escaped(str):
    """Text an escaping filter produced: the only kind a template may write."""


class Specified(str):
    """An argument that holds systemd specifiers on purpose (%N, %p-%i, tracardi.unit=%n):
    systemd expands them, so they are written as they are."""


def only_escaped(value: object) -> str:
    """The templates' finalize: a value that skipped every filter is a template bug."""
    if isinstance(value, Escaped):
        return value
    raise UnsafeValue(f"template error: {value!r} reaches a unit file without an escaping "
                      "filter")


def _escaping(function: Callable[..., str]) -> Callable[..., Escaped]:
    @functools.wraps(function)
    def escaped(*args: object) -> Escaped:
        return Escaped(function(*args))
    return escaped


def check_value(value: str | int, what: str = "value") -> str:
    """Refuse what no escaping can make safe; return the value as text otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise UnsafeValue(f"{what} must be text, not {type(value).__name__}")
    if len(value) > MAX_VALUE_LENGTH:
        raise UnsafeValue(f"{what} is longer than {MAX_VALUE_LENGTH} characters")
    for char in value:
        category = unicodedata.category(char)
        if category == "Cc":
            raise UnsafeValue(
                f"{what} {value!r} contains a newline or control character ({char!r}), "
                "which a unit file cannot hold"
            )
        if category == "Cs" or is_noncharacter(char):
            raise UnsafeValue(f"{what} {value!r} is not valid UTF-8")
    return value


def _specifiers(value: str) -> str:
    return value.replace("%", "%%")


@_escaping
def exec_program(value: str | int) -> str:
    """The program of an Exec*= line: an absolute path, written as it is."""
    value = check_value(value, "program path")
    if not _PROGRAM.fullmatch(value) or posixpath.normpath(value) != value:
        raise UnsafeValue(
            f"program path {value!r} must be a normalized absolute path of letters, digits "
            "and . _ + - /"
        )
    return value


@_escaping
def exec_arg(value: str | int) -> str:
    """One argument of an Exec*= line: systemd passes exactly `value` to the program."""
    value = check_value(value, "argument")
    if _PLAIN_WORD.fullmatch(value):
        return value
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _specifiers(quoted).replace("$", "$$") + '"'


@_escaping
def env_assignment(name: str, value: str | int) -> str:
    """The operand of `Environment=`: one quoted NAME=value assignment."""
    if not is_env_name(name):
        raise UnsafeValue(f"{name!r} is not a valid environment variable name")
    value = check_value(value, f"the value of {name}")
    quoted = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _specifiers(quoted) + '"'


@_escaping
def unit_text(value: str | int) -> str:
    """Free text such as Description=: only specifiers need escaping, on one line."""
    value = check_value(value, "text")
    if value != value.strip() or value.endswith("\\"):
        raise UnsafeValue(f"text {value!r} must not start or end with blanks or a backslash")
    return _specifiers(value)


@_escaping
def unit_path(value: str) -> str:
    """An absolute path as systemd takes it in EnvironmentFile= (no quoting there)."""
    value = check_value(value, "path")
    if not value.startswith("/"):
        raise UnsafeValue(f"path {value!r} must be absolute (start with /)")
    if value != value.strip() or value.endswith("\\"):
        raise UnsafeValue(f"path {value!r} must not end with a blank or a backslash")
    if value != "/" and (posixpath.normpath(value) != value or value.startswith("//")):
        raise UnsafeValue(
            f"path {value!r} is not normalized: write it without '//', '/./', '/../' "
            "or a trailing '/'"
        )
    if len(value.encode()) >= 4096 or any(len(part.encode()) > 255 for part in value.split("/")):
        raise UnsafeValue(
            f"path {value!r} is too long for systemd (a name over 255 bytes or the path over 4095)"
        )
    return _specifiers(value)


@_escaping
def quadlet_value(value: str | int) -> str:
    """A Quadlet key that becomes one podman argument (HealthCmd=). Quadlet (5.4) quotes it
    in the generated ExecStart= but escapes neither `%` nor `$`, so systemd would expand
    both there: written `%%` and `$$`, they reach podman as `%` and `$`."""
    return unit_text(value).replace("$", "$$")


@_escaping
def specified(value: str) -> str:
    """A Specified value: letters, digits, `_.=@-` and the specifiers %n %N %p %i only."""
    if not _SPECIFIED.fullmatch(value):
        raise UnsafeValue(f"{value!r} may hold only letters, digits, '_.=@-' and %n %N %p %i")
    return value


@_escaping
def unit_names(names: Iterable[str]) -> str:
    """Unit names for Requires=, Wants=: each as unit_text, blank-separated."""
    return " ".join(unit_text(name) for name in names)


@_escaping
def exec_command(lines: Sequence[Sequence[str]]) -> str:
    """An Exec*= command from its argv, the program first, written one group per
    continuation line. Specified arguments keep their specifiers; every other is quoted."""
    written, program = [], True
    for line in lines:
        words = []
        for arg in line:
            if program:
                words.append(exec_program(arg))
                program = False
            else:
                words.append(specified(arg) if isinstance(arg, Specified) else exec_arg(arg))
        written.append(" ".join(words))
    return " \\\n    ".join(written)


FILTERS = {
    "quadlet_value": quadlet_value,
    "exec_program": exec_program,
    "exec_arg": exec_arg,
    "env_assignment": env_assignment,
    "unit_text": unit_text,
    "unit_path": unit_path,
    "specified": specified,
    "unit_names": unit_names,
    "exec_command": exec_command,
}
