"""Finished expensive work on disk, by content: a directory of small JSON files.

A :class:`ResultCache` maps content keys (see :func:`structure_key`) to task results, encoded
bit-exactly by :mod:`pyiron_assyst.execution.codec`. Layout::

    <directory>/<namespace>/<key[:2]>/<key>.json          a finished result
    <directory>/<namespace>/<key[:2]>/<key>.failed.json   a failure (reason, detail, value)
    <directory>/<namespace>/manifests/<hash>.json         keys of one batch (progress, status)

A namespace groups the entries of one stage (e.g. ``relax_volume``). Every file is written to
a temporary name in its final directory and moved into place with :func:`os.replace`, so a
killed writer leaves either the whole entry or none (stray temporary files, ``.*.tmp``, are
ignored). An unreadable, foreign or not-allowed entry is treated as missing, with a warning
naming the file, and is computed again: the cache can lose work, never give a wrong answer.
Nothing is unpickled: decoding imports classes from the allow-list of
:mod:`pyiron_assyst.core.config` only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid as _uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from pyiron_assyst.execution.codec import CodecError, decode, encode

__all__ = ["CACHE_FORMAT", "CacheEntry", "Manifest", "ResultCache", "structure_key"]

logger = logging.getLogger(__name__)

CACHE_FORMAT = "pyiron_assyst.execution.cache"
"""Value of ``format`` in every entry file (with ``version`` :data:`CACHE_VERSION`)."""
CACHE_VERSION = 1
_OK, _FAILED = ".json", ".failed.json"
_KEY = re.compile(r"[0-9a-f]{16,64}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.+-]+")


def _update(digest: Any, array: np.ndarray) -> None:
    array = np.asarray(array, order="C")
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())


def structure_key(atoms: Atoms, *parts: str) -> str:
    """Content key of a task on ``atoms``: 40 hex digits.

    Hashes the bytes (with dtype and shape) of ``numbers``, ``positions`` (Å), ``cell`` (Å),
    ``pbc`` and every other per-atom array (e.g. ``initial_magmoms``), the scalar ``info``
    (identity and lineage included, so that a cached result never carries another
    structure's info) and ``parts`` (e.g. the config hashes of the stage and the calculator).
    Any change of these, down to one bit of one position, gives another key.
    """
    digest = hashlib.sha256(b"pyiron_assyst.structure_key.v1")
    for name in sorted(atoms.arrays):
        digest.update(name.encode() + b"\0")
        _update(digest, atoms.arrays[name])
    _update(digest, atoms.cell.array)
    _update(digest, atoms.pbc)
    try:
        info = json.dumps(encode(dict(atoms.info)), sort_keys=True)
    except CodecError:
        info = repr(sorted(atoms.info.items(), key=lambda kv: str(kv[0])))
    digest.update(info.encode())
    for part in parts:
        digest.update(b"\0" + str(part).encode())
    return digest.hexdigest()[:40]


@dataclass(frozen=True)
class CacheEntry:
    """One stored result.

    Parameters
    ----------
    key
        Its content key.
    value
        The decoded result.
    failed
        Whether the task failed (the value then describes the failure).
    reason
        Failure reason (e.g. ``"calculator_error"``, ``"timeout"``); ``""`` if it finished.
    """

    key: str
    value: Any
    failed: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Manifest:
    """The keys of one batch of tasks (one stage on one input set) and their state.

    ``done``, ``failed`` count keys with a finished or failed entry; ``total`` all keys;
    ``created`` is the UTC time (ISO 8601) the batch started.
    """

    namespace: str
    desc: str
    created: str
    total: int
    done: int
    failed: int
    keys: tuple[str, ...] = field(default=(), repr=False)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{_uuid.uuid4().hex[:12]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class ResultCache:
    """Task results by content key in ``directory`` (created when first written).

    Parameters
    ----------
    directory
        Root of the cache, e.g. ``<project>/cache``.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).absolute()

    def __repr__(self) -> str:
        return f"ResultCache({str(self.directory)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultCache) and other.directory == self.directory

    def __hash__(self) -> int:
        return hash(self.directory)

    def namespace(self, name: str) -> ResultCache:
        """The cache of the sub-directory for ``name`` (characters outside ``A-Za-z0-9_.+-``
        become ``_``, e.g. ``"relax:volume"`` -> ``relax_volume``)."""
        slug = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip(".") or "_"
        return ResultCache(self.directory / slug)

    def namespaces(self) -> list[str]:
        """Names of the existing sub-directories that hold entries or manifests."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir()
                      if p.is_dir() and _NAMESPACE.fullmatch(p.name) and p.name[0] != ".")

    def _path(self, key: str, suffix: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"cache keys are 16-64 lower-case hex digits; got {key!r}")
        return self.directory / key[:2] / f"{key}{suffix}"

    # ------------------------------------------------------------------ entries

    def get(self, key: str) -> CacheEntry | None:
        """The entry of ``key`` (a finished one before a failed one), or ``None``."""
        for suffix in (_OK, _FAILED):
            entry = self._read(self._path(key, suffix), key)
            if entry is not None:
                return entry
        return None

    def _read(self, path: Path, key: str) -> CacheEntry | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            logger.warning("ignoring unreadable cache entry %s: %s", path, error)
            return None
        try:
            data = json.loads(text)
            if data.get("format") != CACHE_FORMAT or data.get("version") != CACHE_VERSION:
                raise CodecError(f"not a {CACHE_FORMAT} v{CACHE_VERSION} entry")
            if data.get("key") != key:
                raise CodecError(f"entry is for key {data.get('key')!r}")
            value = decode(data["value"])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            logger.warning("ignoring corrupt or foreign cache entry %s (computed again): %s",
                           path, error)
            return None
        return CacheEntry(key, value, bool(data["failed"]), str(data.get("reason", "")))

    def put(self, key: str, value: Any, failed: bool = False, reason: str = "") -> None:
        """Store ``value`` under ``key`` atomically; a finished result replaces a failure.

        Raises
        ------
        pyiron_assyst.execution.codec.CodecError
            If ``value`` cannot be encoded (nothing is written).
        """
        text = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key,
                           "failed": failed, "reason": reason,
                           "created": datetime.now(UTC).isoformat(), "value": encode(value)})
        path = self._path(key, _FAILED if failed else _OK)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, text)
        if not failed:
            self._path(key, _FAILED).unlink(missing_ok=True)

    def discard(self, key: str) -> None:
        """Remove the entries of ``key``."""
        for suffix in (_OK, _FAILED):
            self._path(key, suffix).unlink(missing_ok=True)

    def listing(self) -> tuple[set[str], set[str]]:
        """Keys with a finished entry and keys with only a failed one (file names only)."""
        done: set[str] = set()
        failed: set[str] = set()
        if not self.directory.is_dir():
            return done, failed
        for shard in os.scandir(self.directory):
            if not (shard.is_dir() and len(shard.name) == 2):
                continue
            for entry in os.scandir(shard.path):
                name = entry.name
                if name.endswith(_FAILED):
                    failed.add(name[:-len(_FAILED)])
                elif name.endswith(_OK) and not name.startswith("."):
                    done.add(name[:-len(_OK)])
        return done, failed - done

    def failures(self, keys: Iterable[str] | None = None) -> dict[str, CacheEntry]:
        """The failed entries (of ``keys`` only, if given), by key."""
        _, failed = self.listing()
        wanted = failed if keys is None else failed & set(keys)
        out = {}
        for key in sorted(wanted):
            entry = self._read(self._path(key, _FAILED), key)
            if entry is not None:
                out[key] = entry
        return out

    # ------------------------------------------------------------------ manifests

    def write_manifest(self, keys: Sequence[str], desc: str = "") -> None:
        """Record the keys of a batch about to run, for :meth:`manifests` (progress)."""
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        path = self.directory / "manifests" / f"{digest}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps({"format": CACHE_FORMAT + ".manifest",
                                        "version": CACHE_VERSION, "desc": desc,
                                        "created": datetime.now(UTC).isoformat(),
                                        "keys": list(keys)}))

    def manifests(self) -> list[Manifest]:
        """Every recorded batch with its progress, oldest first (unreadable ones skipped)."""
        folder = self.directory / "manifests"
        if not folder.is_dir():
            return []
        done, failed = self.listing()
        out = []
        for path in folder.glob("*.json"):
            try:
                data = json.loads(path.read_text())
                keys = tuple(dict.fromkeys(data["keys"]))
                unique = set(keys)
                out.append(Manifest(self.directory.name, str(data.get("desc", "")),
                                    str(data["created"]), len(keys), len(unique & done),
                                    len(unique & failed), keys))
            except (OSError, ValueError, KeyError, TypeError) as error:
                logger.warning("ignoring unreadable cache manifest %s: %s", path, error)
        return sorted(out, key=lambda m: m.created)
