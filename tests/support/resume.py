"""The relaxation that the resume tests kill and restart, importable by their child processes."""

from __future__ import annotations

from ase import Atoms
from ase.build import bulk

from pyiron_assyst.calculators import AseCalculator
from pyiron_assyst.core.lineage import stamp_root
from pyiron_assyst.stages.relax import FullRelax

__all__ = ["CONFIG", "logged_emt", "starts"]


def logged_emt(**kwargs) -> AseCalculator:
    """LoggedEMT (built in the test process, where the ``tests`` prefix is allowed)."""
    return AseCalculator("tests.support.faulty_calculators:LoggedEMT", kwargs=kwargs)


CONFIG = FullRelax(trace=5, max_steps=60)


def starts(n: int = 8) -> list[Atoms]:
    """``n`` strained, rattled Cu cells of 1-4 atoms, each with its own identity."""
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.5 + 0.02 * i).repeat((1 + i % 4, 1, 1))
        atoms.rattle(0.03, seed=i)
        out.append(stamp_root(atoms, f"00000000-0000-4000-8000-{i:012d}"))
    return out
