"""The workflow node of the in-process pyiron hand-off (:mod:`.pyiron_job`).

Kept out of ``pyiron_assyst.export`` itself, which does not import flowrep (2 s).
"""

from __future__ import annotations

from typing import Any

import flowrep as fr
from ase import Atoms

from pyiron_assyst.export.pyiron_job import to_training_container

__all__ = ["training_container"]


@fr.atomic("container")
def training_container(
    structures: list[Atoms],
    project_path: str,
    name: str = "assyst",
    reference_energies: dict[str, float] | None = None,
    delete_existing_job: bool = False,
) -> Any:
    """A pyiron_potentialfit ``TrainingContainer`` job of labelled ``structures`` in the pyiron
    project at ``project_path`` (see :func:`.pyiron_job.to_training_container`; reference
    energies in eV per element). Needs pyiron_potentialfit in this environment."""
    return to_training_container(structures, project_path, name, reference_energies,
                                 delete_existing_job=delete_existing_job)
