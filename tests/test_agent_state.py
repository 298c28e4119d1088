"""observe/agent_state.py: the one schema the agent writes and `status` reads."""

from __future__ import annotations

import pytest

from tracardi_systemd.observe.agent_state import AgentReport, WorkerReport, read_agent_report


def test_what_the_agent_writes_is_what_status_reads(tmp_path):
    report = AgentReport("1/1 workers running; redis 127.0.0.1:6379 ok", {
        "tracardi-update.service": WorkerReport("held", 2, "redis back",
                                                {"redis 127.0.0.1:6379": False}),
    })
    path = tmp_path / "agent-state.json"
    path.write_bytes(report.to_json())
    assert read_agent_report(path) == report


@pytest.mark.parametrize("text", [
    "", "not json", "[]", '{"workers": []}', '{"workers": {"u": "x"}}',
    '{"workers": {"u": {"restarts": "many", "dependencies": ["redis"]}}}',
])
def test_a_partial_or_foreign_file_reads_as_nothing_said(tmp_path, text):
    path = tmp_path / "agent-state.json"
    path.write_text(text)
    report = read_agent_report(path)
    assert all(seen == WorkerReport() for seen in report.workers.values())


def test_a_missing_file_reads_as_nothing_said(tmp_path):
    assert read_agent_report(tmp_path / "absent.json") == AgentReport()
