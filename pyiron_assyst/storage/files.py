"""Files users read appear whole, and no stored or user-given name leads out of its directory.

- :func:`atomic_path` / :func:`write_text_atomic`: write to a temporary name next to the target,
  ``fsync``, :func:`os.replace` onto the target, ``fsync`` the directory. A reader sees the old
  file or the new one, never a half-written one; a killed writer leaves only a hidden
  ``.<name>.tmp-*`` file.
- :func:`check_component` / :func:`inside`: a name taken from a project, a run, a stage or a
  settings file is one plain path component, and a relative path stored in a project resolves
  to a place inside the directory it belongs to (no ``..``, no absolute path, no symlink out).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from pyiron_assyst.storage.errors import StorageError

__all__ = ["atomic_path", "check_component", "fsync_dir", "inside", "write_text_atomic"]


def fsync_dir(path: str | Path) -> None:
    """Flush the entries of directory ``path`` (a rename in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path next to ``target``; moved onto ``target`` (durably) if the block exits
    normally, removed otherwise."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def check_component(name: object, what: str) -> str:
    """``name`` if it is one plain path component, else :class:`StorageError`.

    A component is a non-empty string without ``/``, ``\\``, NUL or control characters that is
    not ``.`` or ``..`` and does not start with ``.`` (hidden names are the package's own
    temporary files).

    Parameters
    ----------
    name
        The candidate (a run, stage or file name from a project, a command line or a settings
        file).
    what
        What the name is, for the message (e.g. ``"run name"``).
    """
    ok = (isinstance(name, str) and bool(name) and not name.startswith(".")
          and not any(c in name for c in "/\\\x00") and all(c.isprintable() for c in name))
    if not ok:
        raise StorageError(f"invalid {what} {name!r}: it must be one file name (no '/', '\\', "
                           "control characters, not starting with '.')")
    return name


def inside(base: str | Path, relative: object, what: str) -> Path:
    """``base / relative`` if that stays inside ``base`` (after resolving symlinks), else
    :class:`StorageError` naming ``what``.

    Parameters
    ----------
    base
        The directory the path must stay in.
    relative
        A relative path read from a stored file or given by the user.
    what
        What the path is, for the message.
    """
    base = Path(base)
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute() or (
            ".." in Path(relative).parts):
        raise StorageError(f"{what} {relative!r} is not a relative path inside the directory",
                           base)
    path = base / relative
    if not path.resolve().is_relative_to(base.resolve()):
        raise StorageError(f"{what} {relative!r} leads out of the directory", base)
    return path
