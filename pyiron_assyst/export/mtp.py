"""MTP (MLIP-2 / MLIP-3) training configurations, ``.cfg``.

One block per structure::

    BEGIN_CFG
     Size
        2
     Supercell
        a_x a_y a_z
        b_x b_y b_z
        c_x c_y c_z
     AtomData:  id type  cartes_x  cartes_y  cartes_z  fx  fy  fz
        1    0  x y z fx fy fz
        2    1  ...
     Energy
        E
     PlusStress:  xx          yy          zz          yz          xz          xy
        v_xx v_yy v_zz v_yz v_xz v_xy
     Feature   uuid <uuid>
    END_CFG

- ``id``: 1-based atom index; ``type``: 0-based index into the element order (``elements``, by
  default the elements present sorted by atomic number; :func:`write_mtp` returns it). The MTP
  potential's species must be given in the same order.
- Positions in Å (Cartesian), forces in eV/Å, ``Energy`` = free (force-consistent) energy in eV.
- ``PlusStress`` is the virial in eV, ``-σ V`` with ASE's stress ``σ`` (eV/Å³) and the cell
  volume ``V`` (Å³), Voigt order xx yy zz yz xz xy; written for 3-D periodic cells with a
  stress only.
- Clusters (no periodic direction) have no ``Supercell``. Slabs and rods (partly periodic) are
  written with their full cell, which MTP treats as 3-D periodic: their vacuum must exceed the
  potential's cutoff (a warning names structures with less than ``min_vacuum``); they have no
  ``PlusStress``.
- Numbers are written with 17 significant digits (``%.16e``), so they read back bit for bit,
  each preceded by a space: a field is 24 characters wide, which a negative number with a
  three-digit exponent (``-2.2368152024805090e-101``, numerical noise of relaxed cells) fills
  completely, and without the space it would touch its neighbour.

The MTP code cannot be installed here: the format is tested against this documentation and
against the ``cfgs`` reader that MLIP ships in its Python tools (mlippy, as vendored by
pyiron_potentialfit).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ase import Atoms

from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.export._files import written
from pyiron_assyst.export.canonical import (
    MIN_VACUUM,
    element_order,
    fully_periodic,
    labels_of,
    virial,
)

__all__ = ["write_mtp"]

_ATOM_HEADER = (" AtomData:  id type       cartes_x      cartes_y      cartes_z"
                "           fx          fy          fz")
_STRESS_HEADER = " PlusStress:  xx          yy          zz          yz          xz          xy"


def _num(value: float) -> str:
    """One field: a space, then the number right-aligned in 24 characters."""
    return f" {float(value):24.16e}"


def _supercell(atoms: Atoms, min_vacuum: float) -> list[str]:
    if not atoms.pbc.any():
        return []
    fully_periodic(atoms, min_vacuum)  # checks the cell, warns about thin vacuum
    return [" Supercell"] + ["   " + "".join(_num(x) for x in v) for v in atoms.cell.array]


def _block(atoms: Atoms, types: dict[str, int], min_vacuum: float) -> list[str]:
    labels = labels_of(atoms)
    lines = ["BEGIN_CFG", " Size", f"    {len(atoms)}", *_supercell(atoms, min_vacuum),
             _ATOM_HEADER]
    for i, (symbol, position, force) in enumerate(zip(atoms.get_chemical_symbols(),
                                                      atoms.positions, labels.forces)):
        lines.append(f"   {i + 1:6d} {types[symbol]:4d}" + "".join(_num(x) for x in position)
                     + "".join(_num(x) for x in force))
    lines += [" Energy", "   " + _num(labels.free_energy)]
    if labels.stress is not None:
        lines += [_STRESS_HEADER, "   " + "".join(_num(x) for x in virial(atoms, labels.stress))]
    lines += [f" Feature   uuid {uuid_of(atoms)}", "END_CFG", ""]
    return lines


def write_mtp(structures: Sequence[Atoms], path: str | Path,
              elements: Sequence[str] | None = None,
              min_vacuum: float = MIN_VACUUM) -> list[str]:
    """Write labelled ``structures`` as MTP ``.cfg`` to ``path`` (atomically).

    Parameters
    ----------
    structures
        Labelled structures (:class:`~.canonical.ExportError` otherwise).
    path
        Output file.
    elements
        Element order defining the 0-based types (default: present elements by atomic number).
    min_vacuum
        Warn when a slab or rod has less vacuum than this (Å) along a non-periodic direction.

    Returns
    -------
    list[str]
        The element order used: type ``i`` is ``elements[i]``.
    """
    order = element_order(structures, elements)
    types = {symbol: i for i, symbol in enumerate(order)}
    lines: list[str] = []
    for atoms in structures:
        lines += _block(atoms, types, min_vacuum)
    with written(path) as tmp:
        tmp.write_text("\n".join(lines) + ("\n" if lines else ""))
    return order
