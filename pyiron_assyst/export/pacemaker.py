"""pacemaker's training DataFrame (``.pckl.gzip``), as ``pacemaker`` and ``pyace`` load it.

One row per structure:

=====================  =========================================================================
column                 value
=====================  =========================================================================
``name``               uuid of the structure (str)
``ase_atoms``          the structure (``ase.Atoms`` without calculator; info and arrays kept;
                       slabs and rods made 3-D periodic with their vacuum, see below)
``energy``             free (force-consistent) energy, eV
``energy_corrected``   ``energy - Σ_i E_ref(element_i)``, eV (the fitting target)
``forces``             forces, eV/Å, ``numpy`` array (N, 3)
``NUMBER_OF_ATOMS``    N (int)
=====================  =========================================================================

Written with ``DataFrame.to_pickle(path, compression="gzip", protocol=4)`` as pacemaker does;
text columns and the column labels use the ``object`` dtype so that the file also loads with
pandas 2 (a pandas-3 ``str`` column cannot be unpickled by pandas 2). In pacemaker's input::

    data:
      filename: train.pckl.gzip

pacemaker builds neighbour lists for fully periodic or non-periodic structures only, so slabs and
rods are written 3-D periodic with their cell (the same system while the vacuum exceeds the
cutoff; a warning names structures with less than ``min_vacuum`` Å).

Without ``reference_energies``, ``energy_corrected`` equals ``energy`` (a warning says so); then
set ``data: reference_energy: auto`` or a per-element dict in pacemaker's input instead, or
pacemaker fits total energies.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.export._files import written
from pyiron_assyst.export.canonical import MIN_VACUUM, corrected_energy, fully_periodic, labels_of

__all__ = ["COLUMNS", "pacemaker_frame", "write_pacemaker"]

COLUMNS = ("name", "ase_atoms", "energy", "energy_corrected", "forces", "NUMBER_OF_ATOMS")
"""Columns of the DataFrame, in order."""


def pacemaker_frame(structures: Sequence[Atoms],
                    reference_energies: Mapping[str, float] | None = None,
                    min_vacuum: float = MIN_VACUUM):  # -> pd.DataFrame
    """The pacemaker DataFrame of labelled ``structures`` (columns :data:`COLUMNS`)."""
    import pandas as pd

    if reference_energies is None:
        warnings.warn("pacemaker export without reference energies: energy_corrected = energy "
                      "(total energies); pass reference_energies or set pacemaker's "
                      "data::reference_energy", UserWarning, stacklevel=3)
    names, frames, energies, corrected, forces = [], [], [], [], []
    for atoms in structures:
        labels = labels_of(atoms)
        corrected.append(corrected_energy(atoms, labels.free_energy, reference_energies or None))
        plain = fully_periodic(atoms, min_vacuum).copy()
        plain.set_constraint()
        names.append(uuid_of(atoms))
        frames.append(plain)
        energies.append(labels.free_energy)
        forces.append(labels.forces)
    frame = pd.DataFrame({
        "name": pd.Series(names, dtype=object),
        "ase_atoms": pd.Series(frames, dtype=object),
        "energy": pd.Series(energies, dtype=np.float64),
        "energy_corrected": pd.Series(corrected, dtype=np.float64),
        "forces": pd.Series(forces, dtype=object),
        "NUMBER_OF_ATOMS": pd.Series([len(a) for a in frames], dtype=np.int64),
    })
    frame.columns = pd.Index(list(COLUMNS), dtype=object)
    return frame


def write_pacemaker(structures: Sequence[Atoms], path: str | Path,
                    reference_energies: Mapping[str, float] | None = None,
                    min_vacuum: float = MIN_VACUUM) -> Path:
    """Write the pacemaker DataFrame of labelled ``structures`` to ``path`` (``.pckl.gzip``).

    Parameters
    ----------
    structures
        Labelled structures (:class:`~.canonical.ExportError` otherwise).
    path
        Output file; gzip-compressed pickle, protocol 4.
    reference_energies
        Isolated-atom energies in eV per element, subtracted in ``energy_corrected``.
    min_vacuum
        Warn about slabs and rods with less vacuum than this (Å).
    """
    frame = pacemaker_frame(structures, reference_energies, min_vacuum)
    with written(path) as tmp:
        frame.to_pickle(tmp, compression="gzip", protocol=4)
    return Path(path)
