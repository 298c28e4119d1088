"""Build-time documents of the CLI, written from click's own command tree: the man page
tracardi-systemd(1) and the shell completions of bash, zsh and fish.

Run by packaging/stage with the venv's Python (the package's own click and commands):

    python packaging/docs.py OUT_DIR

writes OUT_DIR/tracardi-systemd.1 and OUT_DIR/completion.{bash,zsh,fish}. Nothing here is
imported at run time: the package gains no dependency.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from pathlib import Path

import click
from click.shell_completion import get_completion_class

from tracardi_systemd import __version__
from tracardi_systemd.cli.main import main

PROG = "tracardi-systemd"
COMPLETE_VAR = "_TRACARDI_SYSTEMD_COMPLETE"  # what click's generated scripts call back with


def roff(text: str) -> str:
    """Text as troff reads it literally: backslashes, dashes, and a line that starts with
    a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.splitlines())


def paragraphs(help_text: str) -> list[str]:
    """click's help text as paragraphs; a \\b paragraph keeps its lines (one .nf block)."""
    out = []
    for block in inspect.cleandoc(help_text).split("\n\n"):
        if block.startswith("\b\n"):
            out.append(".nf\n" + roff(block[2:]) + "\n.fi")
        else:
            out.append(roff(" ".join(block.split())))
    return out


def options(command: click.Command, context: click.Context) -> list[str]:
    lines = []
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{roff(names)}\\fR", roff(" ".join(help_text.split()))]
    return lines


def man_page() -> str:
    group = main
    root = click.Context(group, info_name=PROG)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    lines = [f'.TH TRACARDI\\-SYSTEMD 1 "{date}" "{PROG} {__version__}" "User Commands"',
             ".SH NAME", f"{roff(PROG)} \\- {roff(group.get_short_help_str(200))}",
             ".SH SYNOPSIS", f"\\fB{roff(PROG)}\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
             ".SH DESCRIPTION"]
    for paragraph in paragraphs(group.help or ""):
        lines += [".PP", paragraph]
    lines += [".SH OPTIONS", *options(group, root), ".SH COMMANDS"]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        assert command is not None
        context = click.Context(command, info_name=name, parent=root)
        usage = " ".join(command.collect_usage_pieces(context))
        lines += [".SS " + roff(name), f"\\fB{roff(PROG)} {roff(name)}\\fR {roff(usage)}"]
        for paragraph in paragraphs(command.help or ""):
            lines += [".PP", paragraph]
        lines += options(command, context)
    lines += [".SH EXIT STATUS",
              "0 when the command did what was asked; 1 when it refused or failed (an env "
              "file with an error, a file it will not overwrite, a host it cannot use); 2 "
              "for a wrong or missing option. \\fBstatus\\fR exits 1 when something is not "
              "healthy; \\fBupgrade\\fR 3 after a rollback and 4 when the rollback failed.",
              ".SH FILES",
              ".TP", "\\fI/etc/tracardi/.env\\-docker\\fR",
              "The installed settings of the workers (root, mode 0600).",
              ".TP", "\\fI/var/lib/tracardi\\-systemd/manifest.json\\fR",
              "What install wrote, with the options it was given.",
              ".TP", "\\fI/etc/systemd/system/tracardi\\-*.service\\fR",
              "The units of the workers, the agent and \\fBtracardi.target\\fR.",
              ".SH SEE ALSO",
              "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBdocker\\fR(1); "
              "/usr/share/doc/tracardi\\-systemd"]
    return "\n".join(lines) + "\n"


def completion(shell: str) -> str:
    """click's completion script for `shell`; it asks the installed program at each <TAB>."""
    cls = get_completion_class(shell)
    assert cls is not None
    return cls(main, {}, PROG, COMPLETE_VAR).source()


def write_all(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{PROG}.1").write_text(man_page())
    for shell in ("bash", "zsh", "fish"):
        (out / f"completion.{shell}").write_text(completion(shell))


if __name__ == "__main__":
    write_all(Path(sys.argv[1]))
