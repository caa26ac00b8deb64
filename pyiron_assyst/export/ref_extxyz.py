"""Extended XYZ with ``REF_`` keys, as MACE and NequIP read their training data.

Each frame has no calculator; its labels are plain data:

==============  ======  ======================================================================
key             where   value
==============  ======  ======================================================================
``REF_energy``  info    free (force-consistent) energy, eV
``REF_forces``  arrays  forces, eV/Å, shape (N, 3)
``REF_stress``  info    stress, eV/Å³, Voigt xx yy zz yz xz xy, ASE sign (3-D periodic only)
==============  ======  ======================================================================

Other scalar ``Atoms.info`` keys (uuid, lineage) are written too. The ``REF_`` prefix keeps ASE
from turning the labels into a calculator (ASE ≥ 3.23 treats ``energy`` / ``forces`` /
``stress`` as calculator results), which MACE warns about.

MACE::

    mace_run_train --train_file=train.extxyz --energy_key=REF_energy \\
        --forces_key=REF_forces --stress_key=REF_stress ...

With ``reference_energies`` the file starts with one frame per element holding the isolated
atom (``config_type=IsolatedAtom``, ``REF_energy`` = its energy, zero forces, no cell), which
MACE takes as the atomic reference energies E0 (``--E0s`` not given).

NequIP (``nequip.data.dataset.ASEDataset``, ``ase_args: {format: extxyz}``) maps the keys with::

    key_mapping:
      REF_energy: total_energy
      REF_forces: forces
      REF_stress: stress

NequIP uses ASE's stress sign (``σ = -virial / V``, positive = tensile) and eV/Å³, so no
conversion is needed; leave ``reference_energies`` out for NequIP (it fits per-type energy
shifts itself and would read isolated-atom frames as training data).

Precision is ASE's (see :mod:`.extxyz`): per-frame values exact, per-atom values to 1e-8.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from pyiron_assyst.export._files import written
from pyiron_assyst.export.canonical import labels_of
from pyiron_assyst.export.extxyz import extxyz_safe

__all__ = ["ISOLATED_ATOM", "write_ref_extxyz"]

ISOLATED_ATOM = "IsolatedAtom"
"""``config_type`` of the isolated-atom frames (MACE's convention)."""


def _frame(atoms: Atoms, prefix: str) -> Atoms:
    labels = labels_of(atoms)
    out = atoms.copy()
    out.set_constraint()
    out.info[f"{prefix}energy"] = labels.free_energy
    out.arrays[f"{prefix}forces"] = labels.forces
    if labels.stress is not None:
        out.info[f"{prefix}stress"] = labels.stress
    return extxyz_safe(out)


def _isolated(symbol: str, energy: float, prefix: str) -> Atoms:
    atoms = Atoms(symbol, positions=[[0.0, 0.0, 0.0]], pbc=False)
    atoms.info["config_type"] = ISOLATED_ATOM
    atoms.info[f"{prefix}energy"] = float(energy)
    atoms.arrays[f"{prefix}forces"] = np.zeros((1, 3))
    return atoms


def write_ref_extxyz(structures: Sequence[Atoms], path: str | Path,
                     reference_energies: Mapping[str, float] | None = None,
                     prefix: str = "REF_") -> Path:
    """Write labelled ``structures`` as extended XYZ with ``REF_`` label keys (atomically).

    Parameters
    ----------
    structures
        Labelled structures (:class:`~.canonical.ExportError` otherwise).
    path
        Output file.
    reference_energies
        Isolated-atom energies in eV per element; written first as ``IsolatedAtom`` frames.
    prefix
        Prefix of the label keys.
    """
    from ase.io import write

    frames = [_isolated(s, e, prefix) for s, e in (reference_energies or {}).items()]
    frames += [_frame(a, prefix) for a in structures]
    with written(path) as tmp:
        write(tmp, frames, format="extxyz")
    return Path(path)
