"""The one lock of a root: install, uninstall and upgrade each hold it while they change
anything, so none of them can undo what another is doing (an install's new env file
written back by an upgrade's rollback, say).

The lock is an exclusive `flock` on the root folder itself: taking it writes nothing
anywhere, and the kernel drops it when the holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class LockBusy(Exception):
    """Another process holds the lock of this root."""


@contextlib.contextmanager
def host_lock(root: Path) -> Iterator[None]:
    """Hold the lock of `root` (LockBusy at once when another process holds it)."""
    fd = os.open(root if root.is_dir() else root.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(str(root)) from None
        yield
    finally:
        os.close(fd)
