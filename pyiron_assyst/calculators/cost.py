"""What one calculation on a structure is expected to cost, before it runs.

Plane-wave DFT scales with the number of atoms to a power between 2 and 3 and linearly with the
number of k-points. :class:`CostModel` turns that into core-hours: ``reference_core_hours`` is
the cost of one single point of one atom with one k-point, and a structure of ``n`` atoms whose
calculator config derives a mesh of ``k`` points (see
:class:`~pyiron_assyst.calculators.structure_settings.StructureSettings`) costs
``reference_core_hours * n ** atom_exponent * k``. A relaxation step costs
``relax_step_fraction`` of that (its self-consistency starts from the previous step's density).
Calibrate both on a handful of real calculations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.config import Config, require

__all__ = ["CostModel", "kpoint_count", "predicted_costs"]


@dataclass(frozen=True)
class CostModel(Config):
    """Core-hours of one single point: ``reference_core_hours * atoms**atom_exponent * kpoints``.

    Parameters
    ----------
    reference_core_hours
        Core-hours of a single point of one atom at one k-point (> 0).
    atom_exponent
        How the cost grows with the number of atoms (plane-wave DFT: 2 to 3; in [0, 4]).
    relax_step_fraction
        Cost of one relaxation step relative to a single point of the same structure, in
        (0, 1] (DFT: about 0.3-0.7, the self-consistency starting from the previous density).
    """

    reference_core_hours: float = 0.01
    atom_exponent: float = 3.0
    relax_step_fraction: float = 0.5

    def __post_init__(self) -> None:
        for field, low, high in (("reference_core_hours", 0.0, math.inf),
                                 ("atom_exponent", 0.0, 4.0),
                                 ("relax_step_fraction", 0.0, 1.0)):
            value = getattr(self, field)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value) and low <= value <= high)
            positive = field != "atom_exponent"
            require(ok and (not positive or value > 0), "CostModel", field,
                    f"a finite number in ({low:g}, {high:g}]" if positive
                    else f"a number in [{low:g}, {high:g}]", value)
            object.__setattr__(self, field, float(value))

    def core_hours(self, n_atoms: int, kpoints: int = 1) -> float:
        """Core-hours of one single point of ``n_atoms`` atoms at ``kpoints`` k-points."""
        return self.reference_core_hours * float(n_atoms) ** self.atom_exponent * kpoints

    def relax_step_core_hours(self, n_atoms: int, kpoints: int = 1) -> float:
        """Core-hours of one relaxation step (see ``relax_step_fraction``)."""
        return self.relax_step_fraction * self.core_hours(n_atoms, kpoints)


def kpoint_count(atoms: Atoms, calculator: CalculatorConfig | None) -> int:
    """Number of k-points ``calculator`` would use for ``atoms`` (1 without a derived mesh)."""
    derive = getattr(calculator, "derive", None)
    if derive is None:
        return 1
    mesh = derive(atoms).kpts
    return 1 if mesh is None else int(np.prod(mesh))


def predicted_costs(structures: Sequence[Atoms], calculator: CalculatorConfig | None = None,
                    model: CostModel = CostModel()) -> np.ndarray:
    """Predicted core-hours of one single point of each structure (see :class:`CostModel`)."""
    return np.array([model.core_hours(len(a), kpoint_count(a, calculator)) for a in structures],
                    dtype=float)
