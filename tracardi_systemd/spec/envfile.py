"""Reading the operator's env file (`.env-docker`).

The same file is read by python-dotenv (here) and by systemd's `EnvironmentFile=` (on the
host). The two parsers agree only on a common subset of the syntax; anything outside it is
refused with the line number and the fix, so that what `check` validated is exactly what
the workers receive.
"""

from __future__ import annotations

import io
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from tracardi_systemd.spec.problems import Problem, error, warning

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Limits below what systemd and the kernel take: a value goes into the environment of the
# docker client's execve (128 KiB per string), every name becomes a `-e NAME` in the unit.
MAX_FILE_BYTES = 256 * 1024
MAX_VALUE_BYTES = 32 * 1024
MAX_SETTINGS = 200
# Names that steer how a program runs (the loader, the docker client, the shell, systemd's
# protocols), not what a worker does. The unit runs /usr/bin/docker and /bin/sh as root
# with the env file's environment: such a name would change what root runs.
_STEERING = re.compile(
    r"LD_\w*|DOCKER_\w*|PATH|HOME|SHELL|ENV|BASH_ENV|BASH_FUNC_\w*|IFS|PS4|SHELLOPTS|BASHOPTS"
    r"|CDPATH|GLOBIGNORE|GCONV_PATH|GETCONF_DIR|GLIBC_TUNABLES|HOSTALIASES|LOCALDOMAIN"
    r"|LOCPATH|MALLOC_\w*|NIS_PATH|NLSPATH|RESOLV_\w*|RES_OPTIONS|TMPDIR|TZDIR|PYTHON\w*"
    r"|NOTIFY_SOCKET|LISTEN_\w*|WATCHDOG_\w*|MAINPID|SYSTEMD_\w*|INVOCATION_ID|CREDENTIALS_\w*"
)
_ASSIGNMENT = re.compile(
    r"\s*(?P<export>export\s+)?(?P<key>[^=]*?)\s*=[ \t]*(?P<raw>.*?)\s*", re.DOTALL
)
_INLINE_COMMENT = re.compile(r"\s#")


@dataclass
class EnvFile:
    path: Path
    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    raw: bytes = b""

    def line_of(self, key: str) -> int | None:
        return self.lines.get(key)


def is_env_name(name: str) -> bool:
    """A name both systemd's EnvironmentFile= and a shell accept as a variable's."""
    return _ENV_NAME.fullmatch(name) is not None


def is_noncharacter(char: str) -> bool:
    """Code points systemd's UTF-8 check refuses (it ignores the whole line holding one)."""
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def load_env_file(path: Path) -> EnvFile:
    """Parse the file; syntax problems are collected in `problems`, never raised."""
    env = EnvFile(path=path)
    where = str(path)
    try:
        env.raw = _read_regular_file(path)
    except OSError as exc:
        env.problems.append(error(where, None, f"cannot read the env file: {exc.strerror}"))
        return env
    except ValueError as exc:
        env.problems.append(error(where, None, str(exc)))
        return env
    text = _decode(env, where)
    if text is None:
        return env
    from dotenv.parser import parse_stream  # here: --help need not load all of dotenv

    for binding in parse_stream(io.StringIO(text)):
        _take(env, where, binding)
    if len(env.values) > MAX_SETTINGS:
        env.problems.append(error(where, None, (
            f"the file sets {len(env.values)} names, more than the {MAX_SETTINGS} a unit "
            "passes to a worker: keep only the settings the workers read")))
    return env


def _read_regular_file(path: Path) -> bytes:
    """The file's bytes; ValueError for a FIFO, device or folder, or a file too large.

    Opened without blocking and checked before reading: a FIFO would hang, /dev/zero
    would fill the memory.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("the env file is not a regular file (a FIFO, device or folder?): "
                             "give the path of a plain file")
        data = os.read(fd, MAX_FILE_BYTES + 1)
        while len(data) <= MAX_FILE_BYTES and (chunk := os.read(fd, MAX_FILE_BYTES + 1)):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the env file is larger than {MAX_FILE_BYTES // 1024} KiB: a Tracardi "
                         "worker's settings fit in a few KiB; is this the right file?")
    return data


def _decode(env: EnvFile, where: str) -> str | None:
    data = env.raw
    if data.startswith(b"\xef\xbb\xbf"):
        env.problems.append(error(
            where, 1,
            "the file starts with a byte-order mark (BOM), which systemd reads as part of "
            "the first name: save it as UTF-8 without BOM",
        ))
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        env.problems.append(error(where, line, "the file is not valid UTF-8: re-save it as UTF-8"))
        return None
    if "\r" in text:
        line = text[: text.index("\r")].count("\n") + 1
        env.problems.append(error(
            where, line,
            "the file has Windows (CRLF) line ends, which systemd and dotenv read "
            f"differently: convert it with  sed -i 's/\\r$//' {where}",
        ))
        text = text.replace("\r\n", "\n")
    return text


def _take(env: EnvFile, where: str, binding) -> None:
    source = binding.original.string.rstrip("\n")
    # dotenv's line is where the blank lines before the binding start: skip those.
    line = binding.original.line + source[: len(source) - len(source.lstrip())].count("\n")
    if binding.error:
        env.problems.append(error(
            where, line,
            "this line cannot be parsed (an unbalanced quote?): write NAME=value, "
            "NAME='value' or NAME=\"value\"",
        ))
        return
    if binding.key is None:
        return  # blank line or comment
    if binding.value is None:
        # The line is not repeated: a line without '=' may be a pasted license.
        env.problems.append(error(
            where, line,
            "this line has no '=': systemd ignores such a line; write NAME= for an empty "
            "value, or remove the line",
        ))
        return
    match = _ASSIGNMENT.fullmatch(source)
    if match is None:  # pragma: no cover - dotenv accepted a shape we do not know
        env.problems.append(error(where, line, "this line cannot be parsed: write NAME=value"))
        return
    key = binding.key
    problem = _name_problem(key, match["export"]) or _value_problem(key, match["raw"])
    if problem:
        env.problems.append(error(where, line, problem))
        return
    if key in env.values:
        env.problems.append(warning(
            where, line, f"{key} is set again (first on line {env.lines[key]}); the last one wins",
        ))
    env.values[key] = binding.value
    env.lines[key] = line


def _name_problem(key: str, export: str | None) -> str | None:
    if export:
        return (
            f"'export {key}=...': systemd does not understand the 'export ' prefix; "
            f"remove it (write {key}=...)"
        )
    if not is_env_name(key):  # not repeated: it may be a pasted license
        return (
            "the name before '=' is not a valid variable name for systemd: use letters, "
            "digits and underscores, not starting with a digit"
        )
    if _STEERING.fullmatch(key.upper()):
        return (
            f"{key} changes how the docker client, its loader or the shell runs (the unit "
            "runs them as root with this file's settings), not what a worker does: remove it"
        )
    return None


def _value_problem(key: str, raw: str) -> str | None:
    if "\n" in raw:
        return (
            f"the value of {key} spans several lines, which systemd and dotenv read "
            "differently: put it on one line"
        )
    if any(unicodedata.category(c) == "Cc" for c in raw):
        return f"the value of {key} holds a control character (tab or other): remove it"
    if any(is_noncharacter(c) or unicodedata.category(c) == "Cs" for c in raw):
        return (f"the value of {key} holds a Unicode noncharacter, which makes systemd refuse "
                "the whole file: remove it")
    if len(raw.encode()) > MAX_VALUE_BYTES:
        return (f"the value of {key} is longer than {MAX_VALUE_BYTES // 1024} KiB, more than "
                "a worker's environment can carry: shorten it")
    if "${" in raw and not raw.startswith("'"):
        return (
            f"the value of {key} uses ${{...}}: dotenv expands it, systemd does not; "
            "write the value out literally"
        )
    quote = raw[:1]
    if quote in ("'", '"'):
        if len(raw) < 2 or raw[-1] != quote:
            return (
                f"the value of {key} has text after its closing quote (a comment?), which "
                "systemd keeps as part of the value: remove it or put the comment on its own line"
            )
        # In single quotes both keep a backslash, except that dotenv unescapes \\ and \'.
        if (quote == '"' and "\\" in raw) or "\\\\" in raw or "\\'" in raw[1:-1]:
            return (
                f"the value of {key} holds a backslash inside quotes, which systemd and "
                "dotenv unescape differently: remove it"
            )
        return None
    if "\\" in raw:
        return (
            f"the value of {key} holds a backslash, which systemd removes and dotenv keeps: "
            "put the value in single quotes"
        )
    if _INLINE_COMMENT.search(raw):
        return (
            f"the value of {key} has a ' #' comment after it: dotenv drops it, systemd keeps "
            "it as part of the value; put the comment on its own line"
        )
    if "'" in raw or '"' in raw:
        return (
            f"the value of {key} holds a quote character inside an unquoted value: "
            "quote the whole value"
        )
    return None
