"""Small labelled data sets shared by the export and hand-off tests."""

from __future__ import annotations

from ase import Atoms
from ase.build import bulk, fcc111

from pyiron_assyst.calculators import AseCalculator
from pyiron_assyst.core.lineage import child_uuid, stamp_root
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.label import label

__all__ = ["REFERENCES", "SMEARED", "training_set"]

SERIAL = Executor(kind="serial")
SMEARED = AseCalculator("tests.support.faulty_calculators:SmearedEMT", {"shift": 0.125})
REFERENCES = {"Cu": -0.25, "Ag": 0.5}


def training_set() -> list[Atoms]:
    """Compressed, strained, mixed, slab and cluster structures labelled with a smeared EMT
    (free_energy != energy), so that a format using the wrong energy shows."""
    cu = bulk("Cu", "fcc", a=3.45, cubic=True)  # compressed: negative stress
    cu.rattle(0.05, seed=2)
    cuag = bulk("Cu", "fcc", a=3.8, cubic=True)
    cuag.symbols[[1, 3]] = "Ag"
    cuag.set_cell(cuag.cell.array @ [[1.02, 0.03, 0], [0, 0.99, 0.01], [0, 0, 1.0]],
                  scale_atoms=True)
    cuag.rattle(0.05, seed=3)
    slab = fcc111("Cu", (2, 2, 2), vacuum=5.0)
    slab.info.clear()
    cluster = Atoms("AgCu2", positions=[[0, 0, 0], [2.5, 0, 0], [1.2, 2.1, 0.4]])
    inputs = [cu, cuag, slab, cluster]
    for i, atoms in enumerate(inputs):
        stamp_root(atoms, child_uuid("export", "test", "x", i))
    out, report = label(inputs, SMEARED, SERIAL)
    assert report.n_out == 4
    return out
