"""The composition of a structure: what the set, its splits and its reports are grouped by."""

from __future__ import annotations

from ase import Atoms

__all__ = ["composition"]


def composition(atoms: Atoms) -> str:
    """The reduced formula of ``atoms`` in Hill order (``Cu2`` and ``Cu4`` are both ``Cu``;
    ``Cu2Ag2`` is ``AgCu``)."""
    return atoms.get_chemical_formula(mode="hill", empirical=True)
