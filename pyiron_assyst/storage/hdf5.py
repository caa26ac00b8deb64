"""Column tables and texts in HDF5 files, in the layout of pyiron_base's storage.

A *structure file* holds one column table (see :mod:`.columnar`) in the group ``structures``,
laid out exactly as ``pyiron_base.FlattenedStorage.to_hdf`` lays it out (``element_arrays``,
``chunk_arrays``, ``num_chunks``, ``num_elements``, ``_fill_values`` and the type datasets), so a
pyiron user reads it with::

    from pyiron_base import FileHDFio, FlattenedStorage
    storage = FlattenedStorage()
    storage.from_hdf(FileHDFio("stage.h5"), "structures")

**What pyiron's structure containers need** (format version 3): besides our ``numbers`` the
file carries ``element_arrays/symbols`` (chemical symbols, what pyiron_atomistics'
``StructureStorage`` and pyiron_potentialfit's ``TrainingStorage`` build structures from), the
identifier of each structure is its uuid (``chunk_arrays/identifier``, an HDF5 hard link to
``info.uuid`` when every structure has one, so it costs no space), and ``stress`` is stored with
pyiron's sign, ``-σ`` (Voigt, eV/Å³, positive = compressed), the sign ``TrainingStorage`` holds;
it is negated back on reading (exact), so in memory it is ASE's stress again. Reading checks
``symbols`` against ``numbers`` (a file in which they disagree shows pyiron other structures
than us, and is refused). Files of versions 1 and 2 (ASE's sign, no ``symbols``) are read as
before.

Strings are stored UTF-8 encoded with four bytes per character (as ``FlattenedStorage`` does)
and gzip compressed, so the padding costs almost nothing on disk; integer, boolean and
partly-NaN float columns are gzip compressed too (level 1), fully finite float columns are
stored raw (random mantissas do not compress; compressing them costs more time than it
saves). Texts (JSON) are stored as h5io ``unicode`` / ``json`` datasets, which
``pyiron_base.FileHDFio`` returns as ``str`` / ``dict``. The files are written with plain
h5py: pyiron_base is never imported (it is not needed to write this layout, its per-structure
``add_chunk`` is ten times slower than the whole write here, and importing it creates
``~/pyiron.db`` unless ``PYIRONDISABLE=True``).

Every file is written to a temporary name next to its target, flushed to disk and moved into
place with :func:`os.replace`, so a killed writer never leaves a half-written file. Every read
error (missing, truncated, foreign or inconsistent file) is a :class:`StorageError` that names
the file.

**Checksums.** Every dataset carries the CRC-32 of its stored bytes in the attribute ``crc32``
(format version 2), verified whenever the dataset is read: a flipped bit in the data gives a
:class:`StorageError` naming the file and the dataset instead of a wrong structure. The files
are written with HDF5's 1.8 object headers, whose metadata (attributes, links, dataset layout)
HDF5 checksums itself. Version-1 files (before checksums) are still read, unverified.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ase.data import chemical_symbols

from pyiron_assyst.storage.columnar import column_kind
from pyiron_assyst.storage.errors import StorageError
from pyiron_assyst.storage.files import atomic_path

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "read_attrs",
    "read_table",
    "read_texts",
    "valid_name",
    "write_table",
    "write_texts",
]

FORMAT = "pyiron_assyst.structures"
"""Value of the root attribute ``format`` of a structure file."""
TEXT_FORMAT = "pyiron_assyst.texts"
"""Value of the root attribute ``format`` of a text file."""
FORMAT_VERSION = 3
"""Layout version written in the root attribute ``format_version`` (2: with checksums; 3:
``symbols``, uuid identifiers and pyiron's stress sign, so pyiron's structure containers load
it)."""
READABLE_VERSIONS = (1, 2, 3)
"""Layout versions this package reads (1: written before checksums, read unverified)."""
PYIRON_SIGN_VERSION = 3
"""First version storing ``stress`` as ``-σ`` (pyiron's sign) and ``symbols``."""
CHECKSUM = "crc32"
"""Attribute of every dataset holding the CRC-32 of its stored bytes."""
_LIBVER = ("v108", "v108")
"""HDF5 file format bounds: 1.8 object headers carry checksums of the file's metadata."""

GROUP = "structures"
_FLAT_TYPE = {
    "NAME": "FlattenedStorage",
    "OBJECT": "FlattenedStorage",
    "TYPE": "<class 'pyiron_base.storage.flattenedstorage.FlattenedStorage'>",
    "VERSION": "0.2.0",
    "HDF_VERSION": "0.3.0",
    "DICT_VERSION": "0.1.0",
}
_SYMBOLS = np.array([s.encode() for s in chemical_symbols], dtype="S8")
"""Chemical symbol of each atomic number as stored (UTF-8, 4 bytes per character of ``U2``)."""
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeDecodeError)


def _crc(array: np.ndarray) -> int:
    """CRC-32 of the bytes of ``array`` (C order)."""
    array = np.ascontiguousarray(array)
    return zlib.crc32(memoryview(array.reshape(-1).view(np.uint8)) if array.size else b"")


def _dataset(group: h5py.Group, name: str, data: np.ndarray, **kwargs: Any) -> h5py.Dataset:
    dataset = group.create_dataset(name, data=data, **kwargs)
    dataset.attrs[CHECKSUM] = np.uint32(_crc(data))
    return dataset


def _load(dataset: h5py.Dataset, path: Path) -> np.ndarray:
    """The stored array of ``dataset``, its checksum verified (version-2 files)."""
    try:
        array = dataset[()]
        stored = dataset.attrs.get(CHECKSUM)
    except Exception as error:  # noqa: BLE001 - whatever h5py raises on a damaged file
        raise StorageError(f"dataset {getattr(dataset, 'name', None)!r} cannot be read "
                           "(corrupt file): "
                           f"{type(error).__name__}: {error}", path) from None
    if dataset.file.attrs.get("format_version") == 1:
        return array
    if stored is None:
        raise StorageError(f"dataset {dataset.name!r} has no checksum (corrupt file)", path)
    if int(stored) != _crc(array):
        raise StorageError(f"checksum mismatch in dataset {dataset.name!r}: the file is "
                           f"corrupt (stored crc32 {int(stored):08x}, data {_crc(array):08x})",
                           path)
    return array


def _write_text(group: h5py.Group, name: str, text: str, title: str = "unicode") -> None:
    data = _dataset(group, name, np.frombuffer(text.encode(), dtype=np.uint8))
    data.attrs["TITLE"] = title


def _read_text(dataset: h5py.Dataset, path: Path) -> str:
    try:
        return _load(dataset, path).tobytes().decode()
    except UnicodeDecodeError as error:
        raise StorageError(f"dataset {dataset.name!r} is not UTF-8 text: {error}", path) from None


def _encode(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind != "U":
        return array
    width = max(1, array.dtype.itemsize // np.dtype("U1").itemsize)
    return np.strings.encode(array, "utf-8").astype(f"S{4 * width}")


def _write_array(group: h5py.Group, name: str, array: np.ndarray) -> None:
    stored = _encode(array)
    compress = stored.size > 0 and (
        stored.dtype.kind in "Sbiu" or (stored.dtype.kind == "f" and np.isnan(stored).any()))
    data = _dataset(group, name, stored, compression="gzip" if compress else None,
                                compression_opts=1 if compress else None,
                                shuffle=compress and stored.dtype.kind in "iuf")
    data.attrs["TITLE"] = "ndarray"


def _write_scalar(group: h5py.Group, name: str, value: int) -> None:
    _dataset(group, name, np.array([value], dtype=np.int64)).attrs["TITLE"] = "int"


def _fill_values(columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
    fills: dict[str, Any] = {}
    for name, array in columns.items():
        if array.dtype.kind == "f":
            fills[name] = float("nan")
        elif array.dtype.kind == "i" and name not in ("length", "start_index"):
            fills[name] = -1
    return fills


def _symbols(numbers: np.ndarray) -> np.ndarray:
    """Stored chemical symbols (``S8``) of atomic ``numbers``; ``X`` for unknown numbers."""
    valid = (numbers >= 0) & (numbers < len(_SYMBOLS))
    return _SYMBOLS[np.where(valid, numbers, 0)]


def _write_identifier(chunk: h5py.Group, columns: Mapping[str, np.ndarray], n: int) -> None:
    """``identifier``: the uuids (a hard link to ``info.uuid``) if every structure has one,
    else the structure indices as strings."""
    if n and "info.uuid" in columns and columns["has_info.uuid"].all():
        chunk["identifier"] = chunk["info.uuid"]
    else:
        _write_array(chunk, "identifier", np.arange(n).astype(np.str_))


def write_table(path: str | Path, columns: Mapping[str, np.ndarray],
                attrs: Mapping[str, str | int] | None = None) -> None:
    """Write a column table (from :func:`.columnar.structures_to_columns`) atomically.

    Parameters
    ----------
    path
        Target file; replaced atomically if it exists.
    columns
        The columns; ``skipped_keys`` goes to a root attribute, the others into the
        ``FlattenedStorage`` groups.
    attrs
        Extra root attributes (e.g. ``stage``, ``run_token``).
    """
    path = Path(path)
    n = len(columns["length"])
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True, libver=_LIBVER) as f:
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION,
                        "n_structures": n, "n_atoms": int(columns["length"].sum()),
                        "skipped_keys": json.dumps(columns["skipped_keys"].tolist())})
        f.attrs.update(dict(attrs or {}))
        group = f.create_group(GROUP, track_order=True)
        for key, value in _FLAT_TYPE.items():
            _write_text(group, key, value)
        _write_scalar(group, "num_elements", int(columns["length"].sum()))
        _write_scalar(group, "num_chunks", n)
        element, chunk = group.create_group("element_arrays"), group.create_group("chunk_arrays")
        for name, array in columns.items():
            kind = column_kind(name)
            if kind != "table":
                stored = np.negative(array) if name == "stress" else array  # pyiron's sign
                _write_array(element if kind == "element" else chunk, name, stored)
        _write_array(element, "symbols", _symbols(columns["numbers"]))
        _write_identifier(chunk, columns, n)
        per = {n: a for n, a in columns.items() if column_kind(n) != "table"}
        _write_text(group, "_fill_values", json.dumps(_fill_values(per)), title="json")


def _open(path: Path, expected: str) -> h5py.File:
    if not path.is_file():
        raise StorageError(f"file not found (expected a {expected} file)", path)
    try:
        f = h5py.File(path, "r")
    except _H5_ERRORS as error:
        raise StorageError(f"not a readable HDF5 file (truncated or foreign?): {error}",
                           path) from None
    try:
        found = f.attrs.get("format")
        version = f.attrs.get("format_version")
    except Exception as error:  # noqa: BLE001 - damaged metadata
        f.close()
        raise StorageError(f"corrupt file (root attributes unreadable): {error}", path) from None
    if found != expected or version not in READABLE_VERSIONS:
        f.close()
        raise StorageError(f"not a {expected} file, version {READABLE_VERSIONS} (format "
                           f"attribute {found!r}, version {version!r})", path)
    return f


@contextlib.contextmanager
def _reading(path: Path, expected: str) -> Iterator[h5py.File]:
    f = _open(path, expected)
    try:
        yield f
    except StorageError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever h5py raises on a damaged file
        raise StorageError(f"corrupt or inconsistent file: {type(error).__name__}: {error}",
                           path) from None
    finally:
        f.close()


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Root attributes of a structure file (``stage``, ``n_structures``, ``skipped_keys`` …)."""
    with _reading(Path(path), FORMAT) as f:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    attrs["skipped_keys"] = json.loads(attrs.get("skipped_keys", "[]"))
    return attrs


def _decode(array: np.ndarray) -> np.ndarray:
    return np.strings.decode(array, "utf-8") if array.dtype.kind == "S" else array


def _check(columns: Mapping[str, np.ndarray], n: int, n_atoms: int, path: Path) -> None:
    for name, array in columns.items():
        expected = n_atoms if column_kind(name) == "element" else n
        if len(array) != expected:
            raise StorageError(f"column {name!r} has {len(array)} rows, expected {expected}",
                               path)
    if "length" in columns:
        lengths, starts = columns["length"].astype(np.int64), columns["start_index"]
        if lengths.sum() != n_atoms or np.any(starts != np.cumsum(lengths) - lengths):
            raise StorageError("structure lengths / start indices are inconsistent", path)


_DERIVED = ("identifier", "symbols")
"""Datasets written for pyiron's readers only (derived from ``info.uuid`` and ``numbers``)."""


def _from_pyiron_conventions(group: h5py.Group, columns: dict[str, np.ndarray],
                             path: Path) -> None:
    """Undo what version 3 stores for pyiron: ``stress`` back to ASE's sign, and check that
    ``symbols`` (what pyiron builds structures from) agree with ``numbers``."""
    if "stress" in columns:
        columns["stress"] = np.negative(columns["stress"])
    if "numbers" in columns:
        elements = group["element_arrays"]
        if "symbols" not in elements:
            raise StorageError("dataset 'symbols' is missing (corrupt file)", path)
        if not np.array_equal(_load(elements["symbols"], path), _symbols(columns["numbers"])):
            raise StorageError("'symbols' disagree with 'numbers': pyiron would read other "
                               "structures than this package (corrupt or edited file)", path)


def read_table(path: str | Path, select: Callable[[str], bool] | Iterable[str] | None = None,
               expect: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Read the columns of a structure file (all, or those ``select`` accepts).

    Parameters
    ----------
    path
        A file written by :func:`write_table`.
    select
        Column names, or a predicate on names; ``None`` reads everything. ``length`` and
        ``start_index`` are always read.
    expect
        Root attributes the file must have (e.g. the ``run_token`` of its run).

    Raises
    ------
    StorageError
        If the file is missing, not HDF5, not a structure file, not the expected one, or
        inconsistent.
    """
    path = Path(path)
    if select is not None and not callable(select):
        wanted = set(select)
        select = wanted.__contains__
    columns: dict[str, np.ndarray] = {}
    with _reading(path, FORMAT) as f:
        for key, value in (expect or {}).items():
            if f.attrs.get(key) != value:
                raise StorageError(f"file does not belong here: attribute {key!r} is "
                                   f"{f.attrs.get(key)!r}, expected {value!r}", path)
        group = f[GROUP]
        n = int(_load(group["num_chunks"], path)[0])
        n_atoms = int(_load(group["num_elements"], path)[0])
        for sub in ("chunk_arrays", "element_arrays"):
            for name, dataset in group[sub].items():
                keep = name in ("length", "start_index") or select is None or select(name)
                if keep and name not in _DERIVED:
                    columns[name] = _decode(_load(dataset, path))
        if f.attrs["format_version"] >= PYIRON_SIGN_VERSION:
            _from_pyiron_conventions(group, columns, path)
        skipped = json.loads(f.attrs.get("skipped_keys", "[]"))
    columns["skipped_keys"] = np.array(skipped, dtype=np.str_)
    _check({k: v for k, v in columns.items() if k != "skipped_keys"}, n, n_atoms, path)
    return columns


def valid_name(name: str) -> bool:
    """Whether ``name`` can be an HDF5 group / dataset / file name stem."""
    return bool(name) and "/" not in name and "\x00" not in name and name not in (".", "..")


def write_texts(path: str | Path, texts: Mapping[str, Mapping[str, str]],
                attrs: Mapping[str, str | int] | None = None) -> None:
    """Write groups of texts (e.g. ``{"configs": {name: json}}``) atomically.

    Each text is an h5io ``unicode`` dataset ``<group>/<name>``, which
    ``pyiron_base.FileHDFio`` reads as ``str``; groups keep insertion order.

    Raises
    ------
    ValueError
        If a group or text name is not a valid HDF5 name (see :func:`valid_name`).
    """
    bad = [name for group, entries in texts.items() for name in (group, *entries)
           if not valid_name(name)]
    if bad:
        raise ValueError(f"names must be non-empty and contain no '/': {bad}")
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True, libver=_LIBVER) as f:
        f.attrs.update({"format": TEXT_FORMAT, "format_version": FORMAT_VERSION})
        f.attrs.update(dict(attrs or {}))
        for group_name, entries in texts.items():
            group = f.create_group(group_name, track_order=True)
            for name, text in entries.items():
                _write_text(group, name, text)


def read_texts(path: str | Path) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Texts and root attributes of a file written by :func:`write_texts`."""
    path = Path(path)
    with _reading(path, TEXT_FORMAT) as f:
        out = {group_name: {name: _read_text(data, path) for name, data in group.items()}
               for group_name, group in f.items()}
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    return out, attrs
