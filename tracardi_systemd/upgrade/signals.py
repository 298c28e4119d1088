"""SIGINT, SIGTERM and SIGHUP during an upgrade (Ctrl-C, an aborted Ansible run, an SSH
session that drops): the upgrade stops where it is and rolls back what moved.

The first signal raises `Interrupted` in the upgrade, except inside `deferred()` (an
install transaction, a manifest save), where it is raised when that ends, so no
transaction is cut in half. Later signals are ignored: the rollback must finish. A SIGKILL
cannot be caught; the record in the manifest covers that (docs/design.md). A signal that
was ignored when the upgrade began stays ignored: under `nohup` (or an Ansible task that
ignores SIGHUP) the operator asked the upgrade to outlive a hangup, not to roll back.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType

CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class Signals:
    """While entered (in the main thread), the signals above interrupt the upgrade."""

    def __init__(self) -> None:
        self.received = 0
        self._raised = False
        self._deferring = 0
        self._before: dict[int, object] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            self._before = {s: signal.signal(s, self._handle) for s in CAUGHT
                            if signal.getsignal(s) != signal.SIG_IGN}
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, handler in self._before.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            return  # the rollback is under way: it must finish
        self.received = signum
        if not self._deferring:
            self._raise()

    def _raise(self) -> None:
        self._raised = True
        raise Interrupted(self.received)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A signal inside is raised only once the block is done."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self.received and not self._raised and not self._deferring:
            self._raise()

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """A signal inside is swallowed: what runs inside is what it would ask for (a
        rollback)."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
            if self.received:
                self._raised = True
