"""`tracardi-systemd events`: what the agent and `upgrade` did, from the journal, one line
each, oldest first (as journalctl prints), so the newest is last, beside the prompt."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import click

from tracardi_systemd.agent.journal_ids import EntryKind
from tracardi_systemd.cli.options import fail
from tracardi_systemd.host.commands import CommandError, run
from tracardi_systemd.host.journal import IDENTIFIER as AGENT_IDENTIFIER
from tracardi_systemd.names import unit_base, worker_name
from tracardi_systemd.upgrade.run import SYSLOG_IDENTIFIER as UPGRADE_IDENTIFIER
from tracardi_systemd.upgrade.run import UpgradeEvent

KINDS = {e.value: e.name.lower() for e in EntryKind} | {
    e.value: f"upgrade_{e.name.lower()}" for e in UpgradeEvent}
PRIORITIES = {"0": "emerg", "1": "alert", "2": "crit", "3": "err", "4": "warning",
              "5": "notice", "6": "info", "7": "debug"}


@dataclass
class Entry:
    time: str  # ISO 8601, local time with offset
    kind: str
    priority: str
    unit: str  # the unit or dependency the entry is about, or ""
    message: str
    message_id: str
    identifier: str
    fields: dict[str, str] = field(default_factory=dict)  # the TRACARDI_* fields


def journalctl_argv(since: str | None, unit: str | None) -> list[str]:
    """Matches on different fields are ANDed by journalctl, on the same field ORed."""
    argv = ["journalctl", "--no-pager", "-o", "json"]
    if since:
        argv.append(f"--since={since}")
    argv += [f"SYSLOG_IDENTIFIER={name}" for name in (AGENT_IDENTIFIER, UPGRADE_IDENTIFIER)]
    argv += [f"MESSAGE_ID={mid}" for mid in KINDS]
    if unit:
        argv.append(f"TRACARDI_UNIT={unit}")
    return argv


def unit_of(given: str) -> str:
    """scheduler, tracardi-scheduler or tracardi-scheduler.service: the unit's full name."""
    return given if "." in given else unit_base(worker_name(given)) + ".service"


def parse(output: str) -> list[Entry]:
    entries = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message = record.get("MESSAGE")
        if not isinstance(message, str):  # journald gives bytes as a list of numbers
            message = bytes(message or []).decode(errors="replace")
        stamp = int(record.get("__REALTIME_TIMESTAMP", "0")) / 1e6
        entries.append(Entry(
            time=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(stamp)),
            kind=KINDS.get(record.get("MESSAGE_ID", ""), "other"),
            priority=PRIORITIES.get(record.get("PRIORITY", ""), ""),
            unit=record.get("TRACARDI_UNIT") or record.get("TRACARDI_DEPENDENCY") or "",
            message=message,
            message_id=record.get("MESSAGE_ID", ""),
            identifier=record.get("SYSLOG_IDENTIFIER", ""),
            fields={k: v for k, v in record.items()
                    if k.startswith("TRACARDI_") and isinstance(v, str)}))
    return entries


def line(entry: Entry) -> str:
    return "  ".join([entry.time, f"{entry.priority:<7}", f"{entry.kind:<18}",
                      entry.unit or "-", entry.message])


@click.command()
@click.option("--since", metavar="TIME",
              help="Only entries since TIME, as journalctl takes it: '1 hour ago', "
              "'today', '2024-05-01 10:00' (default: all the journal keeps).")
@click.option("--unit", metavar="UNIT",
              help="Only entries about this worker unit: tracardi-scheduler.service, or "
              "the worker's name (scheduler).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {time, kind, priority, unit, message, message_id, "
              "identifier, fields}.")
def events(since: str | None, unit: str | None, as_json: bool) -> None:
    """What tracardi-agent and `upgrade` did, from the journal: one line each (time,
    priority, kind, unit or dependency, message), the newest last.

    Reading the system journal needs root or the systemd-journal group. `journalctl -x
    MESSAGE_ID=...` explains an entry's kind.
    """
    try:
        output = run(journalctl_argv(since, unit_of(unit) if unit else None), timeout=60)
    except CommandError as exc:
        fail(f"--since {since!r}: {exc}" if since and "timestamp" in str(exc) else str(exc))
    entries = parse(output)
    if as_json:
        click.echo(json.dumps([asdict(e) for e in entries], indent=2))
    else:
        for entry in entries:
            click.echo(line(entry))
