"""The kinds of journal entry the agent writes, each with its fixed MESSAGE_ID, and the one
way an entry is built and sent.

MESSAGE_IDs are random 128-bit ids (made with `systemd-id128 new`, as systemd's own
catalog does), so `journalctl MESSAGE_ID=...` finds every entry of one kind and nothing
else. Never change one: operators' alerts match on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from tracardi_systemd.host.journal import Journal, Priority


class EntryKind(Enum):
    GAVE_UP = "9c2e7344316c42fcbd4d6f148245cdd9"
    REARM = "80ea54c2b8564472b3df81f86f386bc0"
    RESTART = "3f8f1de91e2a4b029c7c056644a116f1"
    ORPHAN_REMOVED = "f772a3e336d344dabbbc0ed6f1d5b38b"
    RECOVERED = "b93d3da9d90840e7896c25f3085311f2"
    UNREACHABLE = "85e36341d38641cdbc17c83ffbd22666"
    REACHABLE = "5549242acda445e7b7d7caea9896f247"
    HELD = "5028e2d3675e47b5b1ce9c0958acfcd5"
    HOST_PRESSURE = "6fd5a79fbbe2447fada43944a1507f9e"
    CYCLE_FAILED = "81bd250ed886453dbe1951401b7f1d1a"
    ACTION_FAILED = "41f047ce6d84496d8f27fef4f7cb9a03"
    DOCKER_DOWN = "1927e68da23740d281c0eafde55b9755"
    DOCKER_BACK = "bd17c603d5dd4cdc8acd5485e88aa426"
    NOT_LIVE = "927487d9a49c4a62bebe479187dd5300"
    STATE_UNWRITABLE = "f2fe7e5348554dea9827c84ea96af27e"
    RELOADED = "175bae9feaaa485d88c5641561a70283"
    CONTAINER_DIED = "86111eadd1bf45f4ac7bbe451ae331c4"
    METRICS_UNWRITABLE = "95b2d718c6694acb9df51dc2af39ca94"
    QUEUE_STUCK = "d18c4384d5db413a81c39772844b27b9"
    UPGRADE_RUNNING = "60c3b6c8b8784e7d8a0ce79772cfb433"  # the workers are left to its gate
    UPGRADE_INTERRUPTED = "ac96b962b8484a6a8b0b4f6ae94680dc"


@dataclass(frozen=True)
class Entry:
    """One journal entry of the agent's. TRACARDI_ACTION is the kind's name unless given."""

    kind: EntryKind
    priority: Priority
    message: str
    fields: dict[str, str]

    @classmethod
    def of(cls, kind: EntryKind, priority: Priority, message: str, **fields: str) -> Entry:
        return cls(kind, priority, message, {"TRACARDI_ACTION": kind.name.lower(), **fields})

    def send(self, journal: Journal) -> None:
        journal.send(self.message, self.priority, self.kind.value, **self.fields)
