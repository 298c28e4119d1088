"""`install --on-failure UNIT`: the agent starts the hook too when systemd gave up on a
worker, with the same instance name as the worker's own OnFailure= would give it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracardi_systemd.agent.journal_ids import Entry, EntryKind
from tracardi_systemd.agent.policy import Decision, Observation
from tracardi_systemd.host.commands import CommandError
from tracardi_systemd.host.journal import Priority
from tracardi_systemd.names import on_failure_unit

if TYPE_CHECKING:
    from tracardi_systemd.agent.loop import Agent


class FailureHook:
    def __init__(self, hook: str):
        self.hook = hook

    def after_cycle(self, agent: Agent, observation: Observation, decision: Decision,
                    duration: float) -> None:
        for entry in decision.entries:
            if entry.kind is not EntryKind.GAVE_UP:
                continue
            unit = on_failure_unit(self.hook, entry.fields["TRACARDI_UNIT"])
            try:
                agent.systemctl("start", "--no-block", unit)
            except CommandError as exc:
                Entry.of(EntryKind.ACTION_FAILED, Priority.ERROR,
                         f"starting the failure hook {unit} failed: {exc}",
                         TRACARDI_ACTION="on-failure-failed",
                         TRACARDI_UNIT=entry.fields["TRACARDI_UNIT"],
                         TRACARDI_REASON="on-failure hook").send(agent.journal)
