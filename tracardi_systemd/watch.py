"""Waiting for Docker's events between the agent's ticks.

One long-lived `GET /events` stream, filtered to the tool's label, wakes the agent within
milliseconds of a container's death instead of at its next tick; a stream that breaks
(dockerd stopped or restarted) is opened again at a later wait, and the agent reconciles
in full then, which is what catches anything the gap hid. The journal gets one entry per
death, so an operator sees when the agent learnt of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tracardi_systemd.engine import Engine, EngineError, EventStream, StreamClosed
from tracardi_systemd.events import EventKind, Priority
from tracardi_systemd.journal import Journal
from tracardi_systemd.names import LABEL_MANAGED, LABEL_UNIT

SLICE = 1.0  # seconds a wait blocks before looking at the stop flag again
SETTLE = 0.2  # seconds to gather the events of one burst (a stop is die + destroy)


class Watcher:
    def __init__(self, engine: Engine, journal: Journal,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[threading.Event, float], object] = threading.Event.wait):
        self.engine, self.journal, self.clock, self.sleep = engine, journal, clock, sleep
        self.stream: EventStream | None = None

    def wait(self, deadline: float, stop: threading.Event, docker_active: bool) -> bool:
        """Block until `deadline`, a container event or `stop`; True when systemd's view
        may have changed too: a container started, died or went away, or the stream broke
        (a health check's verdict alone changes nothing there). Opens the stream only while
        docker.service runs: connecting would start it through docker.socket."""
        if self.stream is None and docker_active:
            try:
                self.stream = self.engine.events(label=f"{LABEL_MANAGED}=true")
            except EngineError:
                self.stream = None
        while not stop.is_set() and (left := deadline - self.clock()) > 0:
            if self.stream is None:
                self.sleep(stop, min(left, SLICE))
                continue
            try:
                event = self.stream.poll(min(left, SLICE))
                if event is not None:
                    burst = [event, *self.stream.within(SETTLE)]
                    for each in burst:
                        self._report(each)
                    return not all(_action(each).startswith("health_status") for each in burst)
            except StreamClosed:
                self.stream = None
                return True  # dockerd went away or restarted: reconcile in full
        return False

    def _report(self, event: dict) -> None:
        action = _action(event)
        attributes = event.get("Actor", {}).get("Attributes", {})
        name, unit = attributes.get("name", "?"), attributes.get(LABEL_UNIT, "")
        if action == "die":
            code = attributes.get("exitCode", "?")
            self.journal.send(f"container {name} died (exit status {code})", Priority.INFO,
                              EventKind.CONTAINER_DIED.value, TRACARDI_CONTAINER=name,
                              TRACARDI_UNIT=unit, TRACARDI_ACTION="container-died",
                              TRACARDI_REASON=f"exit status {code}")
        elif action == "oom":
            self.journal.send(f"container {name} ran out of memory (the kernel's OOM killer)",
                              Priority.WARNING, EventKind.CONTAINER_DIED.value,
                              TRACARDI_CONTAINER=name, TRACARDI_UNIT=unit,
                              TRACARDI_ACTION="container-oom", TRACARDI_REASON="oom")

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


def _action(event: dict) -> str:
    """die, start, ..., "health_status: healthy"; API versions before 1.22 called it status."""
    return event.get("Action") or event.get("status", "")
