"""Waiting for Docker's events between the agent's ticks.

One long-lived `GET /events` stream, filtered to the tool's label, wakes the agent within
milliseconds of a container's death instead of at its next tick; a stream that breaks
(dockerd stopped or restarted) is resumed where it ended at a later wait, and the agent
reconciles in full then, which is what catches anything the gap hid. The journal gets one
entry per death, so an operator sees when the agent learnt of it: a death in the gap when
the stream resumes, and none twice (on Podman, the resumed stream remembers whose `die`
it handed over before the break, so their `remove` after it is not one more death).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from tracardi_systemd.agent.journal_ids import Entry, EntryKind
from tracardi_systemd.host.engine import Engine, EngineError, EventStream, StreamClosed
from tracardi_systemd.host.journal import Journal, Priority
from tracardi_systemd.names import LABEL_MANAGED, LABEL_UNIT

SETTLE = 0.2  # seconds to gather the events of one burst (a stop is die + destroy)
T = TypeVar("T")


class _Interrupted(Exception):
    pass


class Stop(threading.Event):
    """The agent's stop request, set by SIGTERM or SIGINT (`handle`). One that comes while
    the agent waits for Docker's events also ends the wait at once, raising out of the
    blocking read; during a cycle it only sets the flag, so no cycle is cut short. (Waking
    every second to look at the flag instead costs about 0.05 % of a core on a small VM:
    half of the agent's idle budget at 5 units.)"""

    def __init__(self) -> None:
        super().__init__()
        self._waiting = False

    def handle(self, *_: object) -> None:
        self.set()
        if self._waiting:
            raise _Interrupted

    def during(self, wait: Callable[[], T]) -> T | None:
        """wait(), or None if the stop is requested before it or while it runs."""
        try:
            self._waiting = True
            return None if self.is_set() else wait()
        except _Interrupted:
            return None
        finally:
            self._waiting = False


class Watcher:
    def __init__(self, engine: Engine, journal: Journal,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[threading.Event, float], object] = threading.Event.wait):
        self.engine, self.journal, self.clock, self.sleep = engine, journal, clock, sleep
        self.stream: EventStream | None = None
        self.broken: EventStream | None = None  # the last stream that broke, to resume

    def wait(self, deadline: float, stop: Stop, docker_active: bool) -> bool:
        """Block until `deadline`, a container event or `stop`; True when systemd's view
        may have changed too: a container started, died or went away, or the stream broke
        (a health check's verdict alone changes nothing there). Opens the stream only while
        docker.service runs: connecting would start it through docker.socket. When it
        cannot be opened (docker stopping?), True at the deadline: the next cycle must ask
        systemd afresh before it calls Docker again."""
        unopened = False
        if self.stream is None and docker_active:
            try:
                self.stream = self._opened()
            except EngineError:
                unopened = True
        while not stop.is_set() and (left := deadline - self.clock()) > 0:
            if self.stream is None:
                self.sleep(stop, left)  # set() by the signal handler ends it
                continue
            try:
                event = stop.during(functools.partial(self.stream.poll, left))
                if event is not None:
                    health_only = True
                    for each in itertools.chain([event], self.stream.within(SETTLE)):
                        self._report(each)  # as it comes: a death is in the journal at once
                        health_only = health_only and _action(each).startswith("health_status")
                    return not health_only
            except StreamClosed:
                self.broken, self.stream = self.stream, None
                return True  # dockerd went away or restarted: reconcile in full
        return unopened

    def _opened(self) -> EventStream:
        """The broken stream resumed from its last event, else a new one from now."""
        if self.broken is None:
            return self.engine.events(label=f"{LABEL_MANAGED}=true")
        stream = self.broken.reconnect()
        self.broken = None
        return stream

    def _report(self, event: dict) -> None:
        action = _action(event)
        attributes = event.get("Actor", {}).get("Attributes", {})
        name, unit = attributes.get("name", "?"), attributes.get(LABEL_UNIT, "")
        if action == "die":
            code = attributes.get("exitCode", "?")
            entry = Entry.of(EntryKind.CONTAINER_DIED, Priority.INFO,
                             f"container {name} died (exit status {code})",
                             TRACARDI_CONTAINER=name, TRACARDI_UNIT=unit,
                             TRACARDI_ACTION="container-died",
                             TRACARDI_REASON=f"exit status {code}")
        elif action == "oom":
            entry = Entry.of(EntryKind.CONTAINER_DIED, Priority.WARNING,
                             f"container {name} ran out of memory (the kernel's OOM killer)",
                             TRACARDI_CONTAINER=name, TRACARDI_UNIT=unit,
                             TRACARDI_ACTION="container-oom", TRACARDI_REASON="oom")
        else:
            return
        entry.send(self.journal)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = self.broken = None  # a broken stream closed its socket as it broke


def _action(event: dict) -> str:
    """die, start, ..., "health_status: healthy"; API versions before 1.22 called it status."""
    return event.get("Action") or event.get("status", "")
