"""ASE calculators that misbehave on purpose, for the fault-handling tests.

Reachable from configs as ``AseCalculator("tests.faulty_calculators:FaultyEMT", ...)`` (the
``tests`` prefix is registered in ``conftest.py``). They are plain EMT otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT


class FaultyEMT(EMT):
    """EMT that raises for one structure size and returns NaN forces for another.

    Parameters
    ----------
    raise_natoms
        Raise ``RuntimeError`` when evaluating a structure with this many atoms.
    nan_natoms
        Return NaN forces for a structure with this many atoms ...
    nan_after
        ... from its ``nan_after + 1``-th evaluation on (0: at once; > 0: mid-relaxation).
    """

    def __init__(self, raise_natoms: int = -1, nan_natoms: int = -1, nan_after: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.raise_natoms = raise_natoms
        self.nan_natoms = nan_natoms
        self.nan_after = nan_after
        self.evaluations = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        n = len(atoms if atoms is not None else self.atoms)
        if n == self.raise_natoms:
            raise RuntimeError(f"FaultyEMT refuses {n} atoms")
        super().calculate(atoms, properties, system_changes)
        if n == self.nan_natoms:
            self.evaluations += 1
            if self.evaluations > self.nan_after:
                self.results["forces"] = np.full((n, 3), np.nan)


class CountingEMT(EMT):
    """EMT that counts its real evaluations in the class attribute ``calls`` (this process)."""

    calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        type(self).calls += 1
        super().calculate(atoms, properties, system_changes)


class SmearedEMT(EMT):
    """EMT whose ``free_energy`` differs from ``energy`` by ``-shift`` eV per atom (like DFT)."""

    def __init__(self, shift: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shift = shift

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results["free_energy"] = self.results["energy"] - self.shift * len(self.atoms)
