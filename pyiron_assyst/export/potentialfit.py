"""pyiron_potentialfit's ``TrainingContainer`` data, as an HDF5 file.

pyiron_potentialfit (via pyiron_atomistics) pins older ase / pyiron_base and cannot share an
environment with pyiron_assyst, so the hand-off is a file: the group ``structures`` holds a
``TrainingStorage`` (a pyiron ``FlattenedStorage``) exactly as ``TrainingStorage.to_hdf`` lays
it out::

    structures/
        TYPE, NAME, OBJECT, VERSION, HDF_VERSION, DICT_VERSION, _fill_values,
        num_chunks, num_elements
        chunk_arrays/    identifier (uuid), energy, cell, pbc, length, start_index, stress
                         [, energy_uncorrected]
        element_arrays/  symbols, positions, forces [, spins]

In pyiron_potentialfit's environment these lines give a ``TrainingContainer`` for any fitting
job (here ``PacemakerJob``)::

    from pyiron_atomistics import Project
    from pyiron_base import FileHDFio
    from pyiron_potentialfit.atomistics.job.trainingcontainer import TrainingStorage

    storage = TrainingStorage()
    storage.from_hdf(FileHDFio("training_container.h5"), "structures")
    pr = Project("fit")
    container = pr.create.job.TrainingContainer("assyst")
    container.include_dataset(storage.to_pandas())
    container.input.save_neighbors = False  # its neighbour statistics fail on small clusters
    container.run()                         # saves it; fitting jobs refer to it by job id
    job = pr.create.job.PacemakerJob("ace")
    job.add_training_data(container)

Conventions (pyiron's, not ASE's, where they differ):

- ``energy``: the free (force-consistent) energy in eV — what ``TrainingContainer.include_job``
  takes from VASP. With ``reference_energies``, ``energy`` is ``E - Σ_i E_ref(element_i)`` and
  ``energy_uncorrected`` holds ``E``, exactly as ``TrainingContainer.subtract_reference`` leaves
  them.
- ``forces``: eV/Å. ``positions``, ``cell``: Å, as stored (not wrapped; pyiron wraps positions
  when it builds structures).
- ``stress``: eV/Å³, Voigt xx yy zz yz xz xy, **pyiron's pressure sign, i.e. ``-σ`` with ASE's
  stress σ** (positive = compressed). This is what pyiron stores from DFT (VASP ``stresses``,
  and ``pressures = -atoms.get_stress()`` of its ASE jobs), and what its MTP export expects
  (``PlusStress = stress × volume``). NaN for structures without stress (not 3-D periodic).
- ``pbc``: slabs and rods are stored 3-D periodic with their cell (pacemaker, MTP and pyiron's
  neighbour code take fully periodic or non-periodic structures only); a warning names those
  with less than ``min_vacuum`` Å of vacuum.
- ``identifier``: the structure's uuid; ``spins``: initial magnetic moments (μB) if any
  structure has them (0 for the others).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms

from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.export._files import written
from pyiron_assyst.export.canonical import MIN_VACUUM, corrected_energy, fully_periodic, labels_of
from pyiron_assyst.storage.hdf5 import _write_array, _write_scalar, _write_text

__all__ = ["GROUP", "STORAGE_TYPE", "training_columns", "write_training_container"]

GROUP = "structures"
"""HDF5 group holding the ``TrainingStorage``."""
STORAGE_TYPE = {
    "NAME": "TrainingStorage",
    "OBJECT": "TrainingStorage",
    "TYPE": "<class 'pyiron_potentialfit.atomistics.job.trainingcontainer.TrainingStorage'>",
    "VERSION": "0.2.0",
    "HDF_VERSION": "0.3.0",
    "DICT_VERSION": "0.1.0",
}
"""Type datasets of the group, as ``TrainingStorage.to_hdf`` writes them."""


def training_columns(structures: Sequence[Atoms],
                     reference_energies: Mapping[str, float] | None = None,
                     min_vacuum: float = MIN_VACUUM,
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-structure (chunk) and per-atom (element) arrays of the ``TrainingStorage``."""
    labels = [labels_of(a) for a in structures]
    periodic = [fully_periodic(a, min_vacuum).pbc for a in structures]
    lengths = np.array([len(a) for a in structures], dtype=np.int32)
    starts = (np.cumsum(lengths) - lengths).astype(np.int32)
    free = np.array([x.free_energy for x in labels], dtype=np.float64)
    stress = np.full((len(structures), 6), np.nan)
    for i, x in enumerate(labels):
        if x.stress is not None:
            stress[i] = -x.stress
    chunk = {
        "identifier": np.array([uuid_of(a) for a in structures], dtype=np.str_),
        "energy": free.copy(),
        "cell": np.array([a.cell.array for a in structures], dtype=float).reshape(-1, 3, 3),
        "pbc": np.array(periodic, dtype=bool).reshape(-1, 3),
        "length": lengths,
        "start_index": starts,
        "stress": stress,
    }
    if reference_energies is not None:
        chunk["energy"] = np.array([corrected_energy(a, e, reference_energies)
                                    for a, e in zip(structures, free)], dtype=np.float64)
        chunk["energy_uncorrected"] = free
    element = {
        "symbols": np.array([s for a in structures for s in a.get_chemical_symbols()],
                            dtype="U2"),
        "positions": np.concatenate([a.positions for a in structures] or [np.zeros((0, 3))]),
        "forces": np.concatenate([x.forces for x in labels] or [np.zeros((0, 3))]),
    }
    moments = [a.get_initial_magnetic_moments() for a in structures]
    if any("initial_magmoms" in a.arrays for a in structures):
        if len({m.shape[1:] for m in moments}) == 1:
            element["spins"] = np.concatenate(moments)
        else:
            warnings.warn("initial magnetic moments are collinear for some structures and "
                          "vectors for others; 'spins' not written", UserWarning, stacklevel=3)
    return chunk, element


def write_training_container(structures: Sequence[Atoms], path: str | Path,
                             reference_energies: Mapping[str, float] | None = None,
                             min_vacuum: float = MIN_VACUUM) -> Path:
    """Write labelled ``structures`` as a pyiron_potentialfit ``TrainingStorage`` (atomically).

    Parameters
    ----------
    structures
        Labelled structures (:class:`~.canonical.ExportError` otherwise).
    path
        Output HDF5 file; the data is in group :data:`GROUP`.
    reference_energies
        Isolated-atom energies in eV per element; subtracted from ``energy`` (the original is
        kept in ``energy_uncorrected``).
    min_vacuum
        Warn about slabs and rods with less vacuum than this (Å).
    """
    chunk, element = training_columns(structures, reference_energies, min_vacuum)
    fills = {name: float("nan") for name in ("energy", "energy_uncorrected", "stress", "forces")
             if name in chunk or name in element}
    with written(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        f.attrs["format"] = "pyiron_potentialfit.TrainingStorage"
        group = f.create_group(GROUP, track_order=True)
        for key, value in STORAGE_TYPE.items():
            _write_text(group, key, value)
        _write_scalar(group, "num_elements", int(chunk["length"].sum()))
        _write_scalar(group, "num_chunks", len(chunk["length"]))
        for sub, arrays in (("element_arrays", element), ("chunk_arrays", chunk)):
            target = group.create_group(sub, track_order=True)
            for name, array in arrays.items():
                _write_array(target, name, array)
        _write_text(group, "_fill_values", json.dumps(fills), title="json")
    return Path(path)
