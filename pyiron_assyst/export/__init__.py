"""Hand-off formats for fitting codes, all translated from the one canonical labelled form.

=================  ====================  ==================================================
format             module                read by
=================  ====================  ==================================================
``extxyz``         :mod:`.extxyz`        ASE (``ase.io.read``), anything that reads extxyz
``ref-extxyz``     :mod:`.ref_extxyz`    MACE, NequIP (``REF_energy/REF_forces/REF_stress``)
``pacemaker``      :mod:`.pacemaker`     pacemaker / pyace (``.pckl.gzip`` DataFrame)
``mtp``            :mod:`.mtp`           MTP (MLIP-2/3 ``.cfg``)
``potentialfit``   :mod:`.potentialfit`  pyiron_potentialfit (``TrainingContainer`` HDF5)
=================  ====================  ==================================================

In one environment with pyiron_potentialfit, :func:`.pyiron_job.to_training_container` makes
the ``TrainingContainer`` job directly, without a file (its workflow node:
:func:`.nodes.training_container`).

The canonical form (:mod:`.canonical`): a single point with ``energy`` and ``free_energy`` (eV),
``forces`` (eV/Å) and ``stress`` (eV/Å³, Voigt xx yy zz yz xz xy, ASE sign); fitting targets use
``free_energy``. Units and signs of every key per format: ``docs/units.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ase import Atoms

from pyiron_assyst.export.canonical import ExportError, Labels, element_order, labels_of, virial
from pyiron_assyst.export.extxyz import write_extxyz
from pyiron_assyst.export.mtp import write_mtp
from pyiron_assyst.export.pacemaker import pacemaker_frame, write_pacemaker
from pyiron_assyst.export.potentialfit import write_training_container
from pyiron_assyst.export.pyiron_job import potentialfit_available, to_training_container
from pyiron_assyst.export.ref_extxyz import write_ref_extxyz

__all__ = [
    "FORMATS",
    "TAKES_REFERENCES",
    "ExportError",
    "Labels",
    "element_order",
    "export",
    "labels_of",
    "pacemaker_frame",
    "potentialfit_available",
    "to_training_container",
    "virial",
    "write_extxyz",
    "write_mtp",
    "write_pacemaker",
    "write_ref_extxyz",
    "write_training_container",
]

FORMATS: dict[str, tuple[Callable[..., Any], str]] = {
    "extxyz": (write_extxyz, ".extxyz"),
    "ref-extxyz": (write_ref_extxyz, ".extxyz"),
    "pacemaker": (write_pacemaker, ".pckl.gzip"),
    "mtp": (write_mtp, ".cfg"),
    "potentialfit": (write_training_container, ".h5"),
}
"""Format name -> (writer, usual file suffix)."""

TAKES_REFERENCES = ("ref-extxyz", "pacemaker", "potentialfit")
"""Formats that use isolated-atom reference energies."""


def export(structures: Sequence[Atoms], path: str | Path, format: str,  # noqa: A002
           reference_energies: Mapping[str, float] | None = None,
           elements: Sequence[str] | None = None) -> Any:
    """Write ``structures`` to ``path`` in ``format`` (one of :data:`FORMATS`).

    ``reference_energies`` (eV per element) are used by ``ref-extxyz`` (isolated-atom frames),
    ``pacemaker`` (``energy_corrected``) and ``potentialfit`` (``energy``); ``elements`` sets
    the type order of ``mtp``. Returns what the writer returns (the path, or for ``mtp`` the
    element order).
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {sorted(FORMATS)}")
    writer = FORMATS[format][0]
    kwargs: dict[str, Any] = {}
    if format in TAKES_REFERENCES:
        kwargs["reference_energies"] = reference_energies
    elif reference_energies is not None:
        raise ExportError(f"format {format!r} takes no reference energies")
    if format == "mtp":
        kwargs["elements"] = elements
    elif elements is not None:
        raise ExportError(f"format {format!r} takes no element order")
    return writer(structures, path, **kwargs)
