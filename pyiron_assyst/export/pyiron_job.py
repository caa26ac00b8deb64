"""A labelled set as a pyiron_potentialfit ``TrainingContainer`` job, in one process.

When pyiron_potentialfit is installed next to pyiron_assyst (one environment, see
``docs/units.md``), no file is needed between them::

    from pyiron_atomistics import Project
    from pyiron_assyst.export import to_training_container

    pr = Project("fit")
    container = to_training_container(training_set, pr, "assyst", reference_energies)
    job = pr.create.job.PacemakerJob("ace")
    job.add_training_data(container)

The container holds the same numbers as :func:`~.potentialfit.write_training_container` writes
(pyiron's conventions, listed there): ``energy`` (free energy in eV, minus the reference
energies if given), ``energy_uncorrected`` (the free energy, when references are given),
``forces`` (eV/Å), ``stress`` (eV/Å³, Voigt, pyiron's sign ``-σ``; NaN without stress), the
structure's uuid as identifier and ``spins`` if any structure has initial magnetic moments.
It is filled through ``TrainingContainer.add_structure`` (public API), which keeps extra arrays
such as ``energy_uncorrected``; the documented ``include_dataset(storage.to_pandas())`` drops
them. Users whose pyiron cannot share an environment with pyiron_assyst take the file route.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms

from pyiron_assyst.export.canonical import MIN_VACUUM
from pyiron_assyst.export.potentialfit import training_columns

__all__ = ["INSTALL", "potentialfit_available", "to_training_container"]

INSTALL = 'pip install pyiron_assyst "pyiron_potentialfit==0.3.15" "pyiron_atomistics==0.8.12"'
"""The install command of the shared environment (naming pyiron_atomistics spares pip a long
backtrack through its releases)."""


def potentialfit_available() -> bool:
    """Whether pyiron_potentialfit (and so :func:`to_training_container`) is importable here."""
    return importlib.util.find_spec("pyiron_potentialfit") is not None


def _pyiron() -> tuple[Any, Any]:
    """``(ase_to_pyiron, Project)`` of pyiron_atomistics, once pyiron_potentialfit is loaded."""
    try:
        import pyiron_potentialfit  # noqa: F401 - registers TrainingContainer / PacemakerJob
        from pyiron_atomistics import Project, ase_to_pyiron
    except ImportError as error:
        raise ImportError("to_training_container needs pyiron_potentialfit in this environment: "
                          f"{INSTALL} (or write a file with write_training_container and "
                          f"read it in pyiron's environment); {error}") from error
    return ase_to_pyiron, Project


def _structure(chunk: Mapping[str, np.ndarray], element: Mapping[str, np.ndarray],
               i: int, atoms: slice) -> Atoms:
    """Structure ``i`` (atoms ``atoms``) of the columns, as stored (symbols, positions, cell,
    pbc, spins)."""
    out = Atoms(symbols=element["symbols"][atoms].tolist(), positions=element["positions"][atoms],
                cell=chunk["cell"][i], pbc=chunk["pbc"][i])
    if "spins" in element:
        out.set_initial_magnetic_moments(element["spins"][atoms])
    return out


def to_training_container(structures: Sequence[Atoms], project: Any, name: str,
                          reference_energies: Mapping[str, float] | None = None, *,
                          min_vacuum: float = MIN_VACUUM, save_neighbors: bool = False,
                          delete_existing_job: bool = False, run: bool = True) -> Any:
    """A pyiron_potentialfit ``TrainingContainer`` job holding labelled ``structures``.

    Parameters
    ----------
    structures
        Labelled structures (:class:`~.canonical.ExportError` otherwise), e.g. a run's
        ``training_set`` stage.
    project
        A pyiron ``Project`` (pyiron_atomistics / pyiron_base) or a path, opened as
        ``pyiron_atomistics.Project(path)``.
    name
        Job name of the container.
    reference_energies
        Isolated-atom energies in eV per element, subtracted from ``energy`` (the free energy
        stays in ``energy_uncorrected``).
    min_vacuum
        Warn about slabs and rods (handed over 3-D periodic) with less vacuum than this (Å).
    save_neighbors
        pyiron's neighbour statistics when the job runs (off: they fail on isolated atoms).
    delete_existing_job
        Replace a job of the same name (else a :class:`ValueError`).
    run
        Run (save) the job, so fitting jobs can refer to it by its id.

    Raises
    ------
    ImportError
        If pyiron_potentialfit is not installed; the message names the install command.
    """
    ase_to_pyiron, pyiron_project = _pyiron()
    if isinstance(project, (str, os.PathLike)):
        project = pyiron_project(os.fspath(project))
    chunk, element = training_columns(structures, reference_energies, min_vacuum)
    container = project.create.job.TrainingContainer(name,
                                                     delete_existing_job=delete_existing_job)
    if not container.status.initialized:
        raise ValueError(f"job {name!r} already exists in {project.path} (status "
                         f"{container.status}); pass delete_existing_job=True to replace it")
    for i in range(len(structures)):
        atoms = slice(int(chunk["start_index"][i]),
                      int(chunk["start_index"][i] + chunk["length"][i]))
        extra = ({"energy_uncorrected": chunk["energy_uncorrected"][i]}
                 if "energy_uncorrected" in chunk else {})
        container.add_structure(ase_to_pyiron(_structure(chunk, element, i, atoms)),
                                energy=chunk["energy"][i], forces=element["forces"][atoms],
                                stress=chunk["stress"][i], identifier=str(chunk["identifier"][i]),
                                **extra)
    container.input.save_neighbors = save_neighbors
    if run:
        container.run()
    return container
