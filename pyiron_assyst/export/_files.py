"""Atomic file writes shared by the exporters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from pyiron_assyst.storage.files import atomic_path

__all__ = ["written"]


@contextlib.contextmanager
def written(path: str | Path) -> Iterator[Path]:
    """A temporary path that replaces ``path`` (parents created) when the block succeeds;
    a failed export never leaves a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        yield tmp
