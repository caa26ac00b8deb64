"""The one canonical labelled form that every export translates from.

A labelled structure carries a :class:`~ase.calculators.singlepoint.SinglePointCalculator` (or
any calculator whose ``results`` hold the values) with ``energy`` and ``free_energy`` (eV),
``forces`` (eV/Å) and, for 3-D periodic cells, ``stress`` (eV/Å³, Voigt order xx yy zz yz xz
xy, ASE sign: positive = tensile, the cell wants to shrink). Fitting targets use
``free_energy`` (the force-consistent energy; ``energy`` where a calculator gives none).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers
from ase.stress import full_3x3_to_voigt_6_stress

from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.stages.curate import reference_sum as _reference_sum

__all__ = [
    "MIN_VACUUM",
    "ExportError",
    "Labels",
    "corrected_energy",
    "element_order",
    "fully_periodic",
    "labels_of",
    "reference_sum",
    "vacuum_gap",
    "virial",
]

MIN_VACUUM = 6.0
"""Vacuum (Å) below which a slab or rod made 3-D periodic for a fitting code is warned about."""


class ExportError(ValueError):
    """A structure cannot be written in the chosen format (the message names it and why)."""


@dataclass(frozen=True)
class Labels:
    """The canonical labels of one structure.

    Parameters
    ----------
    energy
        Total energy in eV.
    free_energy
        Force-consistent (free) energy in eV: the fitting target.
    forces
        Atomic forces in eV/Å, shape ``(N, 3)``.
    stress
        Stress in eV/Å³, Voigt xx yy zz yz xz xy, ASE sign; ``None`` unless the structure is
        3-D periodic and has one.
    """

    energy: float
    free_energy: float
    forces: np.ndarray
    stress: np.ndarray | None


def labels_of(atoms: Atoms) -> Labels:
    """The canonical labels of ``atoms``.

    Raises
    ------
    ExportError
        If ``atoms`` has no energy or no forces, or a label is NaN / infinite.
    """
    results = getattr(atoms.calc, "results", None) or {}
    if "forces" not in results or not ({"energy", "free_energy"} & set(results)):
        raise ExportError(f"structure {uuid_of(atoms)} has no label (energy and forces); "
                          "run the label stage first")
    energy = float(results.get("energy", results.get("free_energy")))
    free_energy = float(results.get("free_energy", energy))
    forces = np.array(results["forces"], dtype=float).reshape(len(atoms), 3)
    stress = None
    if "stress" in results and atoms.pbc.all():
        stress = np.asarray(results["stress"], dtype=float)
        stress = full_3x3_to_voigt_6_stress(stress) if stress.shape == (3, 3) else stress.copy()
    for name, value in (("energy", energy), ("free_energy", free_energy), ("forces", forces),
                        ("stress", stress)):
        if value is not None and not np.all(np.isfinite(value)):
            raise ExportError(f"structure {uuid_of(atoms)} has a non-finite {name}")
    return Labels(energy, free_energy, forces, stress)


def virial(atoms: Atoms, stress: np.ndarray) -> np.ndarray:
    """Virial ``-σ V`` in eV (Voigt xx yy zz yz xz xy) from the ASE stress ``σ`` in eV/Å³."""
    return -np.asarray(stress, dtype=float) * atoms.get_volume()


def vacuum_gap(atoms: Atoms, direction: int) -> float:
    """Empty space (Å) between the atoms and their periodic images along cell vector
    ``direction`` (its height above the plane of the other two, minus the atoms' extent)."""
    cell = atoms.cell.array
    normal = np.cross(cell[(direction + 1) % 3], cell[(direction + 2) % 3])
    normal /= np.linalg.norm(normal)
    heights = atoms.positions @ normal
    return float(abs(cell[direction] @ normal) - (heights.max() - heights.min()))


def fully_periodic(atoms: Atoms, min_vacuum: float = MIN_VACUUM) -> Atoms:
    """``atoms`` itself if it is 3-D periodic or a cluster, else a copy (without calculator)
    made 3-D periodic with its cell, for codes that take only those two (pacemaker, MTP).

    A slab or rod computed with vacuum is the same system as long as the vacuum exceeds the
    potential's cutoff; a :class:`UserWarning` names structures with less than ``min_vacuum``
    Å along a direction that was not periodic.

    Raises
    ------
    ExportError
        If a partly periodic structure has no full-rank cell.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all() or not pbc.any():
        return atoms
    if atoms.cell.rank < 3:
        raise ExportError(f"structure {uuid_of(atoms)} is periodic along {pbc.tolist()} only "
                          "and has no full cell to make it 3-D periodic")
    for direction in np.flatnonzero(~pbc):
        gap = vacuum_gap(atoms, int(direction))
        if gap < min_vacuum:
            warnings.warn(f"structure {uuid_of(atoms)} is written 3-D periodic, but the vacuum "
                          f"along cell vector {direction} is only {gap:.3g} Å "
                          f"(< {min_vacuum:g} Å)", UserWarning, stacklevel=3)
    out = atoms.copy()
    out.pbc = True
    return out


def element_order(structures: Iterable[Atoms], elements: Sequence[str] | None = None,
                  ) -> list[str]:
    """Element order of a typed format: ``elements`` if given (checked to cover every element
    present), else the elements present sorted by atomic number."""
    present = {s for atoms in structures for s in atoms.get_chemical_symbols()}
    if elements is None:
        return sorted(present, key=lambda s: atomic_numbers[s])
    order = list(elements)
    if len(set(order)) != len(order):
        raise ExportError(f"element order has repeated elements: {order}")
    missing = sorted(present - set(order))
    if missing:
        raise ExportError(f"element order {order} lacks {missing}")
    return order


def reference_sum(atoms: Atoms, energies: Mapping[str, float]) -> float:
    """``Σ_i E_ref(element_i)`` in eV (see :func:`pyiron_assyst.stages.curate.reference_sum`).

    Raises
    ------
    ExportError
        If an element of ``atoms`` has no reference energy.
    """
    try:
        return _reference_sum(atoms, energies)
    except KeyError as error:
        raise ExportError(f"structure {uuid_of(atoms)}: {error.args[0]}") from None


def corrected_energy(atoms: Atoms, energy: float,
                     reference_energies: Mapping[str, float] | None) -> float:
    """``energy - Σ_i E_ref(element_i)`` in eV, the fitting target; ``energy`` itself if
    ``reference_energies`` is ``None``.

    Raises
    ------
    ExportError
        If an element of ``atoms`` has no reference energy.
    """
    if reference_energies is None:
        return energy
    return energy - reference_sum(atoms, reference_energies)
