"""Extended XYZ as ASE writes it, from the canonical labels.

Each frame carries the structure (``Lattice``, ``pbc``, species, positions), its scalar
``Atoms.info`` (uuid, lineage, ...), per-atom arrays such as ``initial_magmoms``, and — for
labelled structures — ``energy``, ``free_energy`` (eV), ``forces`` (eV/Å) and, for 3-D periodic
cells, ``stress`` (eV/Å³, ASE sign; ASE writes it as a 3×3 matrix and reads it back in Voigt
form). ``ase.io.read(path, ":")`` returns the structures with a ``SinglePointCalculator``
holding these labels.

Precision is ASE's: per-frame numbers (energies, stress, cell, info) are written exactly
(shortest round-trip repr); per-atom columns (positions, forces) with ``%16.8f``, i.e. to 1e-8 Å
and 1e-8 eV/Å. Info values that are empty strings are left out (ASE cannot read them back).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pyiron_assyst.export._files import written
from pyiron_assyst.export.canonical import labels_of

__all__ = ["canonical_copy", "extxyz_safe", "write_extxyz"]


def canonical_copy(atoms: Atoms, require_labels: bool = True) -> Atoms:
    """A copy of ``atoms`` whose single point holds exactly the canonical labels (energy,
    free_energy, forces, and stress for 3-D periodic cells); no constraints.

    Unlabelled structures raise :class:`~.canonical.ExportError`, or with
    ``require_labels=False`` come back without a calculator.
    """
    out = atoms.copy()
    out.set_constraint()
    results = getattr(atoms.calc, "results", None) or {}
    if not require_labels and "forces" not in results and "energy" not in results:
        return out
    labels = labels_of(atoms)
    values = {"energy": labels.energy, "free_energy": labels.free_energy,
              "forces": labels.forces}
    if labels.stress is not None:
        values["stress"] = labels.stress
    out.calc = SinglePointCalculator(out, **values)
    return out


def extxyz_safe(atoms: Atoms) -> Atoms:
    """``atoms`` (in place) without info values that are empty strings: ASE's extxyz writer
    emits them unquoted and its reader then swallows the next key into them."""
    for key in [k for k, v in atoms.info.items() if isinstance(v, str) and not v]:
        del atoms.info[key]
    return atoms


def write_extxyz(structures: Sequence[Atoms], path: str | Path,
                 require_labels: bool = False) -> Path:
    """Write ``structures`` to ``path`` in ASE's extended XYZ format (atomically).

    Parameters
    ----------
    structures
        The structures; labelled ones get their canonical labels written.
    path
        Output file (``.extxyz`` / ``.xyz``).
    require_labels
        Refuse unlabelled structures (:class:`~.canonical.ExportError`) instead of writing
        them without labels.
    """
    from ase.io import write

    frames = [extxyz_safe(canonical_copy(a, require_labels)) for a in structures]
    with written(path) as tmp:
        write(tmp, frames, format="extxyz")
    return Path(path)
