"""What a fitting code trains on: a labelled structure's reference keys and loss weights
(:func:`training_targets`) and the isolated atoms' energies (:func:`isolated_energies`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from pyiron_assyst.calculators.evaluation import has_labels
from pyiron_assyst.fitting.split import is_anchor
from pyiron_assyst.stages.explore import TEMPERATURE_KEY as EXPLORED_KEY

__all__ = ["isolated_energies", "training_targets", "write_xyz"]


def isolated_energies(structures: Sequence[Atoms], r_max: float) -> dict[str, float]:
    """``{symbol: E}`` in eV (``free_energy``) of the labelled single atoms whose periodic
    images are all at least ``r_max`` Å away (what a model of cutoff ``r_max`` sees as an
    isolated atom); the first one of an element wins."""
    from pyiron_assyst.calculators.structure_settings import is_isolated_atom

    found: dict[str, float] = {}
    for atoms in structures:
        if len(atoms) == 1 and has_labels(atoms) and is_isolated_atom(atoms, r_max):
            results = atoms.calc.results
            found.setdefault(atoms.get_chemical_symbols()[0],
                             float(results.get("free_energy", results["energy"])))
    return found


def training_targets(atoms: Atoms, cluster_weight: float = 1.0,
                     cluster_forces_weight: float | None = None,
                     explored_weights: tuple[float, float] = (1.0, 1.0)) -> Atoms:
    """A copy of a labelled structure with MACE's reference keys and no calculator.

    ``info['REF_energy']`` is the label's ``free_energy`` (eV; ``energy`` if absent),
    ``arrays['REF_forces']`` its forces (eV/Å) and ``info['REF_stress']`` its stress (eV/Å³,
    Voigt, ASE sign) when it has one. Lineage keys are kept. An isolated atom, dimer or
    trimer of the short-range stage gets ``info['config_weight'] = cluster_weight`` (MACE's
    per-structure loss weight) unless that is 1; with ``cluster_forces_weight`` it gets
    ``config_energy_weight = cluster_weight`` and ``config_forces_weight =
    cluster_forces_weight`` instead (energy and forces weighted apart). A snapshot of the
    explore stage (``info['explore_temperature']``) gets ``config_energy_weight`` and
    ``config_forces_weight`` from ``explored_weights`` unless both are 1.
    """
    results = atoms.calc.results
    out = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.info = {k: v for k, v in atoms.info.items() if k in ("uuid", "root")}
    out.info["REF_energy"] = float(results.get("free_energy", results["energy"]))
    out.arrays["REF_forces"] = np.array(results["forces"], dtype=float)
    if "stress" in results and atoms.pbc.all():
        out.info["REF_stress"] = np.array(results["stress"], dtype=float)
    if is_anchor(atoms) and cluster_forces_weight is not None:
        out.info["config_energy_weight"] = float(cluster_weight)
        out.info["config_forces_weight"] = float(cluster_forces_weight)
    elif is_anchor(atoms) and cluster_weight != 1.0:
        out.info["config_weight"] = float(cluster_weight)
    if EXPLORED_KEY in atoms.info and tuple(explored_weights) != (1.0, 1.0):
        out.info["config_energy_weight"] = float(explored_weights[0])
        out.info["config_forces_weight"] = float(explored_weights[1])
    return out


def write_xyz(path: Path, structures: Sequence[Atoms]) -> None:
    """Write ``structures`` to ``path`` as extended XYZ (what MACE reads)."""
    from ase.io import write

    write(path, list(structures), format="extxyz")
