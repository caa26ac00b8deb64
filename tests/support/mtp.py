"""MTP ``.cfg`` helpers: a reader written from MLIP's documented format (independent of the
writer) and a structure whose numbers fill the writer's 24-character fields."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from pyiron_assyst.core.lineage import child_uuid, stamp_root

TINY = -2.2368152024805090e-101
"""A negative number with a three-digit exponent: 24 characters in ``%24.16e``."""


def tiny_numbers() -> Atoms:
    """A labelled cell whose cell, positions, forces, energy and stress hold numbers with
    three-digit exponents (numerical noise of relaxed cells)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms("CuAg", positions=[[TINY, 0.0, -1.0e-150], [1.8, 1.8, 1.8]],
                  cell=[[3.6, TINY, -7.5e-120], [1.0e-300, 3.6, 0.0], [TINY, TINY, 3.6]],
                  pbc=True)
    stamp_root(atoms, child_uuid("export", "tiny", "x", 0))
    atoms.calc = SinglePointCalculator(
        atoms, energy=-3.0e-101, free_energy=TINY, forces=[[TINY, -1.0e-200, 0.0],
                                                          [-TINY, 1.0e-200, -0.0]],
        stress=[TINY, -4.4e-110, 0.0, 1.0e-100, -9.9e-199, TINY])
    return atoms


def parse_cfg(text: str) -> list[dict]:
    """A reader written from MLIP's documented .cfg format (independent of the writer)."""
    blocks, lines = [], iter(text.splitlines())
    for line in lines:
        if line.strip() != "BEGIN_CFG":
            continue
        block: dict = {"features": {}}
        for entry in lines:
            key = entry.strip()
            if key == "END_CFG":
                break
            if key == "Size":
                block["size"] = int(next(lines))
            elif key == "Supercell":
                block["cell"] = np.array([[float(x) for x in next(lines).split()]
                                          for _ in range(3)])
            elif key.startswith("AtomData:"):
                assert key.split()[1:] == ["id", "type", "cartes_x", "cartes_y", "cartes_z",
                                           "fx", "fy", "fz"]
                rows = [next(lines).split() for _ in range(block["size"])]
                block["ids"] = [int(r[0]) for r in rows]
                block["types"] = [int(r[1]) for r in rows]
                block["positions"] = np.array([[float(x) for x in r[2:5]] for r in rows])
                block["forces"] = np.array([[float(x) for x in r[5:8]] for r in rows])
            elif key == "Energy":
                block["energy"] = float(next(lines))
            elif key.startswith("PlusStress:"):
                assert key.split()[1:] == ["xx", "yy", "zz", "yz", "xz", "xy"]
                block["virial"] = np.array([float(x) for x in next(lines).split()])
            elif key.startswith("Feature"):
                _, name, value = key.split(maxsplit=2)
                block["features"][name] = value
        blocks.append(block)
    return blocks
