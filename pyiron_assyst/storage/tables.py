"""Views on stored columns that build no ``Atoms``: stage tables and lineage walks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from pyiron_assyst.storage.columnar import HAS_INFO, INFO

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LINEAGE_COLUMNS", "LineageIndex", "lineage_index", "stage_frame", "walk"]

LINEAGE_COLUMNS = tuple(f"{prefix}{key}" for key in ("uuid", "parent", "step", "ancestry")
                        for prefix in (INFO, HAS_INFO))
"""The columns :func:`lineage_index` needs."""

LineageIndex = dict[str, tuple[str | None, str | None, str | None]]
"""uuid -> (parent, step, ancestry); ``None`` where the structure has no such info key."""

_NULLABLE = {"b": "boolean", "i": "Int64", "U": "string"}


def _masked(values: np.ndarray, present: np.ndarray) -> pd.Series:
    import pandas as pd

    if present.all() or values.dtype.kind not in _NULLABLE:
        data = np.where(present, values, np.nan) if values.dtype.kind == "f" else values
        return pd.Series(data)
    series = pd.Series(pd.array(values.tolist(), dtype=_NULLABLE[values.dtype.kind]))
    series[~present] = pd.NA
    return series


def stage_frame(columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per structure of a stage, from its per-structure columns.

    Columns: ``natoms``; ``energy`` and ``free_energy`` (eV, NaN where unlabelled);
    ``energy_per_atom`` (eV/atom); ``volume_per_atom`` (Å³/atom, NaN unless periodic in all
    three directions); ``has_forces``, ``has_stress``; then every stored ``Atoms.info`` key
    under its own name (``info.<key>`` if the name is taken by a column above). An info key
    missing on some structures is ``<NA>`` there (nullable dtypes; NaN for floats).
    """
    import pandas as pd

    natoms = columns["length"].astype(np.int64)
    energy = np.where(columns["has_energy"], columns["energy"], np.nan)
    cells = columns["cell"]
    volume = np.abs(np.linalg.det(cells)) if len(cells) else np.zeros(0)
    data: dict[str, object] = {
        "natoms": natoms,
        "energy": energy,
        "free_energy": np.where(columns["has_free_energy"], columns["free_energy"], np.nan),
        "energy_per_atom": energy / np.maximum(natoms, 1),
        "volume_per_atom": np.where(columns["pbc"].all(axis=1), volume / np.maximum(natoms, 1),
                                    np.nan),
        "has_forces": columns["has_forces"],
        "has_stress": columns["has_stress"],
    }
    for name, values in columns.items():
        if name.startswith(INFO):
            key = name[len(INFO):]
            data[name if key in data else key] = _masked(values, columns[HAS_INFO + key])
    return pd.DataFrame(data, index=pd.RangeIndex(len(natoms)))


def _optional(columns: Mapping[str, np.ndarray], key: str, n: int) -> list[str | None]:
    if INFO + key not in columns:
        return [None] * n
    present = columns[HAS_INFO + key].tolist()
    return [v if p else None for v, p in zip(columns[INFO + key].tolist(), present)]


def lineage_index(tables: Iterable[Mapping[str, np.ndarray]]) -> LineageIndex:
    """uuid -> (parent, step, ancestry) over several column tables (first occurrence wins)."""
    index: LineageIndex = {}
    for columns in tables:
        n = len(columns["length"])
        uuids = _optional(columns, "uuid", n)
        rows = zip(uuids, _optional(columns, "parent", n), _optional(columns, "step", n),
                   _optional(columns, "ancestry", n))
        for uuid, parent, step, ancestry in rows:
            if uuid is not None and uuid not in index:
                index[uuid] = (parent, step, ancestry)
    return index


def walk(index: LineageIndex, uuid: str) -> list[tuple[str, str | None]]:
    """``(uuid, step)`` from ``uuid`` back to its root.

    The chain is the structure's ``ancestry`` if stored, else its ``parent`` links; the step of
    an ancestor that is not in ``index`` (not stored in any stage) is ``None``.

    Raises
    ------
    KeyError
        If ``uuid`` is not in ``index``.
    """
    if uuid not in index:
        raise KeyError(f"no structure with uuid {uuid!r} in the stored stages")
    parent, step, ancestry = index[uuid]
    if ancestry is not None:
        ups = ancestry.split(";")[::-1] if ancestry else []
    else:
        ups, seen = [], {uuid}
        while parent and parent not in seen:
            ups.append(parent)
            seen.add(parent)
            parent = index[parent][0] if parent in index else None
    return [(uuid, step)] + [(u, index[u][1] if u in index else None) for u in ups]
