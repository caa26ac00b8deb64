"""One writer at a time: an exclusive ``flock`` on ``<project>/.lock``.

A second process that wants to write waits up to a timeout and then gets a
:class:`StorageError` naming the lock file and the pid of the holder. The lock is released by the
kernel when its holder exits, even after SIGKILL, so a killed writer never blocks the project.
Readers take no lock: runs appear in the project by an atomic directory rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from pyiron_assyst.storage.errors import StorageError

__all__ = ["project_lock"]

_POLL = 0.05
"""Seconds between attempts while waiting for the lock."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def project_lock(path: str | Path, timeout: float = 60.0) -> Iterator[None]:
    """Hold the exclusive write lock of the lock file ``path``.

    Parameters
    ----------
    path
        The lock file (created if missing).
    timeout
        Seconds to wait for another writer to finish; ``0`` fails at once.

    Raises
    ------
    StorageError
        If the lock is still held by another process after ``timeout`` seconds.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:  # e.g. a read-only project
        raise StorageError(f"cannot write to the project (its lock file cannot be opened: "
                           f"{error.strerror})", path) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StorageError(
                        f"project is being written by another process (pid {_holder(path)}); "
                        f"gave up after {timeout:g} s", path) from None
                time.sleep(_POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
