"""`tracardi-systemd events`: journalctl's JSON, as it prints it, into one line per entry;
the matches it asks journalctl for. The real journal is read in tests/e2e/test_monitoring.py."""

import json

from click.testing import CliRunner

from tracardi_systemd.agent.journal_ids import EntryKind
from tracardi_systemd.cli import events as events_module
from tracardi_systemd.cli.main import main
from tracardi_systemd.host.commands import CommandError
from tracardi_systemd.upgrade.run import UpgradeEvent

RESTART = {  # as `journalctl -o json` prints an agent entry (trimmed)
    "__REALTIME_TIMESTAMP": "1714557603000000", "PRIORITY": "4",
    "SYSLOG_IDENTIFIER": "tracardi-agent", "MESSAGE_ID": EntryKind.RESTART.value,
    "MESSAGE": "restarting tracardi-scheduler.service: its container is gone",
    "TRACARDI_UNIT": "tracardi-scheduler.service", "TRACARDI_WORKER": "scheduler",
    "TRACARDI_ACTION": "restart", "TRACARDI_REASON": "container missing", "_PID": "42",
}
UNREACHABLE = {
    "__REALTIME_TIMESTAMP": "1714557604000000", "PRIORITY": "3",
    "SYSLOG_IDENTIFIER": "tracardi-agent", "MESSAGE_ID": EntryKind.UNREACHABLE.value,
    "MESSAGE": [114, 101, 100, 105, 115, 32, 100, 111, 119, 110],  # journald's bytes form
    "TRACARDI_DEPENDENCY": "redis 127.0.0.1:6379",
}
DONE = {
    "__REALTIME_TIMESTAMP": "1714557605000000", "PRIORITY": "5",
    "SYSLOG_IDENTIFIER": "tracardi-systemd", "MESSAGE_ID": UpgradeEvent.DONE.value,
    "MESSAGE": "upgrade from 0.8.1 to 0.8.2 done", "TRACARDI_TO_TAG": "0.8.2",
}
OUTPUT = "".join(json.dumps(r) + "\n" for r in (RESTART, UNREACHABLE, DONE))


def test_the_matches_are_the_agent_s_and_upgrade_s_ids_under_their_identifiers():
    argv = events_module.journalctl_argv("1 hour ago", "tracardi-scheduler.service")
    assert argv[:5] == ["journalctl", "--no-pager", "-o", "json", "--since=1 hour ago"]
    assert "SYSLOG_IDENTIFIER=tracardi-agent" in argv
    assert "SYSLOG_IDENTIFIER=tracardi-systemd" in argv
    ids = {a.removeprefix("MESSAGE_ID=") for a in argv if a.startswith("MESSAGE_ID=")}
    assert ids == {e.value for e in EntryKind} | {e.value for e in UpgradeEvent}
    assert argv[-1] == "TRACARDI_UNIT=tracardi-scheduler.service"


def test_a_worker_may_be_named_as_the_operator_names_it():
    for given in ("scheduler", "tracardi-scheduler", "tracardi-scheduler.service"):
        assert events_module.unit_of(given) == "tracardi-scheduler.service"


def test_one_line_each_in_journal_order(monkeypatch):
    asked = []
    monkeypatch.setattr(events_module, "run", lambda argv, **_: asked.append(argv) or OUTPUT)
    monkeypatch.setenv("TZ", "UTC")
    result = CliRunner().invoke(main, ["events", "--unit", "scheduler"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("2024-05-01T10:00:03+0000  warning  restart ")
    assert lines[0].endswith("tracardi-scheduler.service  restarting tracardi-scheduler."
                             "service: its container is gone")
    assert "unreachable" in lines[1] and lines[1].endswith("redis 127.0.0.1:6379  redis down")
    assert "upgrade_done" in lines[2]
    assert asked[0][-1] == "TRACARDI_UNIT=tracardi-scheduler.service"


def test_json_carries_the_tracardi_fields(monkeypatch):
    monkeypatch.setattr(events_module, "run", lambda argv, **_: OUTPUT)
    result = CliRunner().invoke(main, ["events", "--json"])
    entries = json.loads(result.output)
    assert [e["kind"] for e in entries] == ["restart", "unreachable", "upgrade_done"]
    assert entries[0]["fields"] == {
        "TRACARDI_UNIT": "tracardi-scheduler.service", "TRACARDI_WORKER": "scheduler",
        "TRACARDI_ACTION": "restart", "TRACARDI_REASON": "container missing"}
    assert entries[0]["message_id"] == EntryKind.RESTART.value


def test_a_bad_since_names_the_option(monkeypatch):
    def refuse(argv, **_):
        raise CommandError("journalctl --no-pager -o json failed (exit status 1): Failed to "
                           "parse timestamp: yesterdayish")
    monkeypatch.setattr(events_module, "run", refuse)
    result = CliRunner().invoke(main, ["events", "--since", "yesterdayish"])
    assert result.exit_code == 1
    assert result.output.startswith("error: --since 'yesterdayish': ")
