"""Identity and ancestry of structures.

Identity is derived, not drawn:

- a sampled crystal's uuid comes from ``(seed, formula, dim, group, repeat)``;
- a child's uuid comes from ``(parent uuid, step name, config hash, copy index)``.

So four copies of one rattle of one minimum are four structures with four random streams, and
two crystals that relax to the same cell stay two lineages. The random stream of a step is
seeded from the child's uuid, the config seed and the retry index (:func:`rng_for`), never from
a shared stream or a position in a batch.
"""

from __future__ import annotations

import hashlib
import uuid as _uuid
from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms

from pyiron_assyst.core.info_keys import set_info

__all__ = [
    "ancestors",
    "ancestry",
    "child_uuid",
    "ensure_identity",
    "lineage_table",
    "make_child",
    "rng_for",
    "root_uuid",
    "stamp_root",
    "uuid_of",
]

NAMESPACE = _uuid.UUID("5b0f7c52-3a1e-4b8e-9a59-61a55a5f0c11")
"""uuid5 namespace of pyiron_assyst identities."""


def root_uuid(seed: int, formula: str, dim: int, group: int, repeat: int) -> str:
    """Identity of a sampled crystal (also of its grid point if sampling fails there)."""
    return str(_uuid.uuid5(NAMESPACE, f"sample|{seed}|{formula}|{dim}|{group}|{repeat}"))


def child_uuid(parent: str, step: str, config_hash: str, copy: int = 0) -> str:
    """Identity of the ``copy``-th structure that ``step`` makes of ``parent``."""
    return str(_uuid.uuid5(NAMESPACE, f"{parent}|{step}|{config_hash}|{copy}"))


def rng_for(seed: int, uuid: str, retry: int = 0) -> np.random.Generator:
    """Random stream for the structure ``uuid`` at retry ``retry``, under config seed ``seed``."""
    words = [(_uuid.UUID(uuid).int >> (32 * i)) & 0xFFFFFFFF for i in range(4)]
    return np.random.default_rng(np.random.SeedSequence([*_seed_words(seed), *words, retry]))


def _seed_words(seed: int) -> list[int]:
    """The whole integer seed as 32-bit words, sign first, so no two seeds collide."""
    magnitude, words = abs(int(seed)), []
    while True:
        words.append(magnitude & 0xFFFFFFFF)
        magnitude >>= 32
        if not magnitude:
            break
    return [int(seed < 0), len(words), *words]


def _content_uuid(atoms: Atoms) -> str:
    digest = hashlib.sha256()
    for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
        digest.update(np.ascontiguousarray(array).tobytes())
    return str(_uuid.uuid5(NAMESPACE, "content|" + digest.hexdigest()))


def stamp_root(atoms: Atoms, uuid: str, step: str = "sample") -> Atoms:
    """Mark ``atoms`` as a root structure with identity ``uuid`` (in place; returned).

    Roots carry no ``parent`` and no ``ancestry`` key: ASE's extxyz writer emits empty strings
    unquoted and its reader then swallows the next key into them.
    """
    for key in ("parent", "ancestry"):
        atoms.info.pop(key, None)
    set_info(atoms, "uuid", uuid)
    set_info(atoms, "root", uuid)
    set_info(atoms, "step", step)
    return atoms


def ensure_identity(atoms: Atoms) -> Atoms:
    """Give a structure from outside the package a content-derived identity (in place)."""
    if "uuid" not in atoms.info:
        stamp_root(atoms, _content_uuid(atoms), step="input")
    return atoms


def uuid_of(atoms: Atoms) -> str:
    """The uuid of ``atoms`` (content-derived for structures the package did not make)."""
    return atoms.info["uuid"] if "uuid" in atoms.info else _content_uuid(atoms)


def make_child(child: Atoms, parent: Atoms, step: str, uuid: str) -> Atoms:
    """Stamp ``child`` (in place) as made from ``parent`` by ``step`` with identity ``uuid``."""
    parent_uuid = uuid_of(parent)
    parent_ancestry = parent.info.get("ancestry", "")
    set_info(child, "uuid", uuid)
    set_info(child, "parent", parent_uuid)
    set_info(child, "root", parent.info.get("root", parent_uuid))
    set_info(child, "ancestry", f"{parent_ancestry};{parent_uuid}" if parent_ancestry
             else parent_uuid)
    set_info(child, "step", step)
    return child


def ancestry(atoms: Atoms) -> tuple[str, ...]:
    """uuids of all ancestors of ``atoms``, root first (empty for a root)."""
    text = atoms.info.get("ancestry", "")
    return tuple(text.split(";")) if text else ()


def ancestors(atoms: Atoms, pool: Iterable[Atoms]) -> list[Atoms]:
    """The ancestors of ``atoms`` found in ``pool``, root first.

    Raises
    ------
    KeyError
        If an ancestor is missing from ``pool``; the message names the missing uuids.
    """
    by_uuid = {s.info.get("uuid"): s for s in pool}
    chain = ancestry(atoms)
    missing = [u for u in chain if u not in by_uuid]
    if missing:
        raise KeyError(f"ancestors not in the pool: {missing}")
    return [by_uuid[u] for u in chain]


def lineage_table(structures: Sequence[Atoms]):  # -> pandas.DataFrame
    """One row per structure: identity, lineage, composition, volume and energy per atom.

    Columns: ``uuid``, ``parent``, ``root``, ``step``, ``generation`` (number of ancestors),
    ``formula`` (chemical formula), ``natoms``, ``volume_per_atom`` (Å³/atom, NaN for
    non-periodic cells) and ``energy_per_atom`` (eV/atom, NaN where unlabelled).
    """
    import pandas as pd

    rows = []
    for s in structures:
        energy = np.nan
        if s.calc is not None and "energy" in getattr(s.calc, "results", {}):
            energy = float(s.calc.results["energy"]) / len(s)
        volume = s.cell.volume / len(s) if all(s.pbc) else np.nan
        rows.append({
            "uuid": uuid_of(s),
            "parent": s.info.get("parent", ""),
            "root": s.info.get("root", uuid_of(s)),
            "step": s.info.get("step", "input"),
            "generation": len(ancestry(s)),
            "formula": s.get_chemical_formula(),
            "natoms": len(s),
            "volume_per_atom": volume,
            "energy_per_atom": energy,
        })
    return pd.DataFrame(rows)
