"""Save / load of a large labelled structure set: project HDF5 storage vs. pickle.

Run::

    python benchmarks/bench_storage.py            # 100,000 structures of 1-10 atoms
    python benchmarks/bench_storage.py --n 10000

Every structure has random numbers, positions and cell, lineage info (uuid, parent, root,
ancestry, step) plus ``formula``, ``repeat`` and ``converged``, and a SinglePointCalculator with
energy, free_energy, forces and stress. "raw" is what the arrays occupy in memory in ASE
(numbers int64, positions / forces / cell / stress / energies float64, pbc bool) plus the info
values (strings as UTF-8 bytes, ints and floats 8 bytes, bools 1 byte).
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm import tqdm

from pyiron_assyst.core import lineage
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.storage import Project

STEPS = ("relax:volume", "relax:full", "perturb:rattle")


def make_structures(n: int, seed: int = 0) -> list[Atoms]:
    """``n`` labelled structures of 1-10 atoms, in lineages of four (root + three steps)."""
    rng = np.random.default_rng(seed)
    out: list[Atoms] = []
    parent = None
    for i in tqdm(range(n), desc="building structures", disable=None):
        k = int(rng.integers(1, 11))
        atoms = Atoms(numbers=rng.integers(1, 84, k), positions=rng.random((k, 3)) * 6,
                      cell=np.eye(3) * 6 + rng.random((3, 3)) * 0.3, pbc=True)
        if i % 4 == 0 or parent is None:
            lineage.stamp_root(atoms, lineage.root_uuid(seed, "X", 3, 225, i))
        else:
            step = STEPS[i % 4 - 1]
            lineage.make_child(atoms, parent, step,
                               lineage.child_uuid(parent.info["uuid"], step, "0123abcd", 0))
        set_info(atoms, "formula", atoms.get_chemical_formula())
        set_info(atoms, "repeat", i)
        set_info(atoms, "converged", bool(i % 3))
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(rng.normal()), free_energy=float(rng.normal()),
            forces=rng.normal(size=(k, 3)), stress=rng.normal(size=6) * 1e-2)
        out.append(atoms)
        parent = atoms
    return out


def raw_bytes(structures: list[Atoms]) -> tuple[int, int]:
    """(bytes of the numeric arrays, bytes of the info values) as held in memory."""
    numeric = info = 0
    for a in structures:
        numeric += a.numbers.nbytes + a.positions.nbytes + a.cell.array.nbytes + a.pbc.nbytes
        numeric += 8 + 8 + a.calc.results["forces"].nbytes + a.calc.results["stress"].nbytes
        for value in a.info.values():
            info += len(value.encode()) if isinstance(value, str) else (
                1 if isinstance(value, bool) else 8)
    return numeric, info


def _timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - start, result


def _same(a: Atoms, b: Atoms) -> bool:
    return (np.array_equal(a.numbers, b.numbers) and a.positions.tobytes() == b.positions.tobytes()
            and a.cell.array.tobytes() == b.cell.array.tobytes() and a.info == b.info
            and all(np.asarray(a.calc.results[k]).tobytes()
                    == np.asarray(b.calc.results[k]).tobytes() for k in a.calc.results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of structures")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()
    structures = make_structures(args.n)
    numeric, info = raw_bytes(structures)
    n_atoms = sum(len(a) for a in structures)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        project = Project(Path(tmp) / "project")
        t_save, run_dir = _timed(lambda: project.save_run("bench", stages={"all": structures}))
        h5_size = sum(f.stat().st_size for f in run_dir.rglob("*.h5"))
        t_load, loaded = _timed(project.load_stage, "bench", "all")
        t_table, table = _timed(project.stage_table, "bench", "all")
        assert len(loaded) == len(table) == args.n
        assert all(_same(structures[i], loaded[i]) for i in range(0, args.n, 97))
        del loaded
        pickle_path = Path(tmp) / "structures.pkl"

        def dump() -> None:
            with open(pickle_path, "wb") as f:
                pickle.dump(structures, f, protocol=pickle.HIGHEST_PROTOCOL)

        def load() -> list[Atoms]:
            with open(pickle_path, "rb") as f:
                return pickle.load(f)

        t_pdump, _ = _timed(dump)
        t_pload, _ = _timed(load)
        p_size = os.path.getsize(pickle_path)
    mb = 1e6
    print(f"\n{args.n} structures, {n_atoms} atoms; raw arrays {numeric / mb:.1f} MB "
          f"+ info values {info / mb:.1f} MB = {(numeric + info) / mb:.1f} MB")
    print(f"{'format':<26}{'save s':>9}{'load s':>9}{'size MB':>10}{'size/raw':>10}")
    rows = [("project HDF5 (Atoms)", t_save, t_load, h5_size),
            ("pickle (protocol 5)", t_pdump, t_pload, p_size)]
    for name, save, load_time, size in rows:
        print(f"{name:<26}{save:>9.2f}{load_time:>9.2f}{size / mb:>10.1f}"
              f"{size / (numeric + info):>10.2f}")
    print(f"{'project stage_table':<26}{'':>9}{t_table:>9.2f}   (info columns, no Atoms)")


if __name__ == "__main__":
    main()
