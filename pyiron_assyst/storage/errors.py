"""The one error type of the storage layer."""

from __future__ import annotations

from pathlib import Path

__all__ = ["StorageError"]


class StorageError(RuntimeError):
    """A project, run or stage file is missing, foreign, corrupt, incomplete or locked.

    Parameters
    ----------
    message
        What went wrong.
    path
        The file or directory concerned; it is named in the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{message} [{self.path}]" if path is not None else message)
