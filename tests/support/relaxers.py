"""A relaxation engine written for the tests and shown in docs/custom-relaxer.md: the one hook of
:class:`~pyiron_assyst.stages.relax.Relaxation` overridden without an ASE optimizer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ase import Atoms

from pyiron_assyst.stages.relax import Minimization, Relaxation

__all__ = ["GoldenVolumeRelax"]


# --- golden-start
@dataclass(frozen=True)
class GoldenVolumeRelax(Relaxation):
    """Volume relaxation without an ASE optimizer: golden-section search of E(cell scale)."""

    lower: float = 0.9
    upper: float = 1.1
    scale_tolerance: float = 1e-7

    kind: ClassVar[str] = "golden"

    def minimize(self, atoms: Atoms, calculator) -> Minimization:
        cell = atoms.cell.array.copy()
        atoms.calc = calculator

        def energy(scale: float) -> float:
            atoms.set_cell(cell * scale, scale_atoms=True)
            return atoms.get_potential_energy()

        ratio = (math.sqrt(5) - 1) / 2
        a, b = self.lower, self.upper
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        fc, fd = energy(c), energy(d)
        steps = 0
        while b - a > self.scale_tolerance and steps < self.max_steps:
            if fc < fd:
                b, d, fd = d, c, fc
                c = b - ratio * (b - a)
                fc = energy(c)
            else:
                a, c, fc = c, d, fd
                d = a + ratio * (b - a)
                fd = energy(d)
            steps += 1
        energy((a + b) / 2)  # the final structure is the last evaluated: labels come from cache
        return Minimization(atoms, converged=b - a <= self.scale_tolerance, steps=steps)
# --- golden-end
