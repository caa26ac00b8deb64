"""Curation: reference energies, caps, distance check and fingerprint-based duplicates."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell
from ase.calculators.emt import EMT as AseEMT
from ase.calculators.singlepoint import SinglePointCalculator
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from pyiron_assyst.calculators import EMT, AseCalculator
from pyiron_assyst.calculators.structure_settings import SPIN_POLARIZED, StructureSettings
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.core.lineage import child_uuid, stamp_root, uuid_of
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.curate import (
    CurationConfig,
    curate,
    find_duplicates,
    fingerprint,
    isolated_atom,
    reference_energies,
)
from pyiron_assyst.stages.filters import DistanceFilter
from pyiron_assyst.stages.label import label

SERIAL = Executor(kind="serial")


def labelled(atoms: Atoms, energy: float, forces: np.ndarray | None = None,
             name: str = "") -> Atoms:
    """``atoms`` stamped with a uuid and a single point with the given energy (eV)."""
    out = atoms.copy()
    stamp_root(out, child_uuid("curation", name or str(energy), "t", len(out)))
    forces = np.zeros((len(out), 3)) if forces is None else forces
    out.calc = SinglePointCalculator(out, energy=energy, free_energy=energy, forces=forces)
    return out


def cuag(a: float = 3.8) -> Atoms:
    atoms = bulk("Cu", "fcc", a=a, cubic=True)
    atoms.symbols[[1, 2]] = "Ag"
    return atoms


def transformed(atoms: Atoms, seed: int) -> Atoms:
    """The same crystal rotated, translated, permuted and in another (unimodular) cell."""
    rng = np.random.default_rng(seed)
    out = make_supercell(atoms, [[1, 1, 0], [0, 1, 0], [1, 0, 1]], wrap=True)
    out = out[rng.permutation(len(out))]
    rotation = Rotation.random(random_state=seed).as_matrix()
    out.set_cell(out.cell.array @ rotation.T, scale_atoms=True)
    out.translate(rng.normal(size=3))
    out.wrap()
    return out


# ----------------------------------------------------------------------------- fingerprint


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.2))
def test_fingerprint_is_invariant_to_rotation_permutation_translation_and_cell(seed, rattle):
    atoms = cuag()
    atoms.rattle(rattle, seed=seed % 1000)
    reference = fingerprint(atoms)
    np.testing.assert_allclose(fingerprint(transformed(atoms, seed)), reference, atol=1e-9)


def test_fingerprint_is_invariant_to_symmetry_operations():
    atoms = bulk("Cu", "hcp", a=2.55, c=4.16) * (2, 1, 1)
    mirrored = atoms.copy()
    mirrored.positions[:, 2] *= -1  # a mirror of hcp is a symmetry operation
    mirrored.wrap()
    np.testing.assert_allclose(fingerprint(mirrored), fingerprint(atoms), atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(1e-4, 0.1))
def test_fingerprint_moves_at_most_twice_the_displacement(seed, delta):
    atoms = cuag()
    atoms.rattle(0.1, seed=seed % 1000)
    moved = atoms.copy()
    direction = np.random.default_rng(seed).normal(size=(len(atoms), 3))
    moved.positions += delta * direction / np.linalg.norm(direction, axis=1)[:, None]
    assert np.abs(fingerprint(moved) - fingerprint(atoms)).max() <= 2 * delta + 1e-9


def test_fingerprints_of_clusters_and_slabs_have_fixed_lengths():
    cluster = Atoms("Cu3", positions=[[0, 0, 0], [2.4, 0, 0], [1.2, 2.0, 0.3]])
    assert len(fingerprint(cluster)) == 3 * 2  # each atom sees the other two
    slab = bulk("Cu", cubic=True)
    slab.pbc = (True, True, False)
    assert len(fingerprint(slab)) == 2 + 4 * 8
    assert len(fingerprint(cuag())) == 4 + (2 * 8) * 4


# ----------------------------------------------------------------------------- duplicates


def test_duplicates_are_found_in_any_setting_and_the_first_survives():
    base = cuag()
    base.rattle(0.02, seed=3)
    other = cuag(3.9)
    rattled = base.copy()
    rattled.rattle(0.05, seed=9)
    pool = [base, other, transformed(base, 1), rattled, transformed(other, 2),
            transformed(base, 5)]
    assert find_duplicates(pool, tolerance=0.01) == [0, 1, 0, 3, 1, 0]
    primitive = bulk("Cu", "fcc", a=3.6)
    conventional = bulk("Cu", "fcc", a=3.6, cubic=True)  # same crystal, another cell size
    assert find_duplicates([primitive, conventional]) == [0, 1]


def test_duplicate_search_scales_without_pairwise_comparisons():
    rng = np.random.default_rng(0)
    pool = []
    for i in range(1500):
        atoms = cuag()
        atoms.positions += rng.normal(scale=0.1, size=(4, 3)) if i % 3 else 0.0
        pool.append(atoms)  # every third structure is the ideal cell: 500 duplicates
    start = time.process_time()  # CPU time: a busy host's load does not count
    survivors = find_duplicates(pool)
    elapsed = time.process_time() - start
    assert sum(s != i for i, s in enumerate(survivors)) == 499
    assert all(survivors[i] == 0 for i in range(0, 1500, 3))
    assert elapsed < 5.0  # ~1.5 s of CPU; 1.1 million pairwise matches would take minutes


@pytest.mark.slow
def test_ten_thousand_structures_of_one_composition():
    rng = np.random.default_rng(1)
    pool = []
    for i in range(10_000):
        atoms = cuag()
        atoms.positions += rng.normal(scale=0.1, size=(4, 3)) if i % 2 else 0.0
        pool.append(atoms)
    start = time.process_time()
    survivors = find_duplicates(pool)
    elapsed = time.process_time() - start
    assert sum(s != i for i, s in enumerate(survivors)) == 4999
    assert elapsed < 30.0  # ~5 s measured; pairwise structure matching would take hours


# ----------------------------------------------------------------------------- curate


def test_curate_counts_every_removal_by_reason():
    close = Atoms("Cu2", positions=[[0, 0, 0], [1.0, 0, 0]], cell=[8, 8, 8], pbc=True)
    hot_forces = np.zeros((4, 3))
    hot_forces[2] = [3.0, 4.0, 0.0]  # |F| = 5 eV/Å
    unlabelled = cuag(4.0)
    stamp_root(unlabelled, child_uuid("curation", "none", "t", 0))
    nan = labelled(cuag(4.1), math.nan)
    base = labelled(cuag(), -8.0, name="base")
    pool = [
        base,                                           # kept
        labelled(cuag(3.7), -7.0),                      # 0.25 eV/atom above: kept
        labelled(cuag(3.6), -4.0),                      # 1 eV/atom above: energy_cap
        labelled(cuag(3.9), -7.5, hot_forces),          # force_cap
        labelled(close, -1.0),                          # min_distance
        unlabelled,                                     # unlabelled
        nan,                                            # non_finite
        labelled(transformed(cuag(), 4), -8.0, name="dup"),  # duplicate of base
        labelled(bulk("Cu", "fcc", a=3.6), 3.0),        # its composition's lowest: kept
    ]
    config = CurationConfig(energy_cap=0.5, force_cap=4.0, distance=DistanceFilter(1.1))
    kept, report = curate(pool, config)
    assert [pool.index(a) for a in kept] == [0, 1, 8]
    assert all(any(a is p for p in pool) for a in kept)
    assert report.drop_counts() == {"energy_cap": 1, "force_cap": 1, "min_distance": 1,
                                    "unlabelled": 1, "non_finite": 1, "duplicate": 1}
    assert report.n_out + len(report.drops) == report.n_candidates == 9
    details = {d.reason: d.detail for d in report.drops}
    assert details["energy_cap"].startswith("1 eV/atom above the lowest Cu1Ag1")
    assert details["force_cap"].startswith("max |F| = 5 eV/Å")
    assert details["duplicate"] == f"duplicate of {uuid_of(base)} (fingerprints within 0.01 Å)"
    assert [d.uuid for d in report.drops if d.reason == "duplicate"] == [uuid_of(pool[7])]


def test_relative_cap_uses_the_minimum_of_the_reduced_composition():
    small = labelled(bulk("Cu", "fcc", a=3.6), -3.0)               # -3 eV/atom
    large = labelled(bulk("Cu", "fcc", a=3.7, cubic=True), -10.0)  # -2.5 eV/atom
    kept, report = curate([small, large], CurationConfig(energy_cap=0.4))
    assert kept == [small]
    assert report.drop_counts() == {"energy_cap": 1}
    kept, _ = curate([small, large], CurationConfig(energy_cap=0.5))
    assert len(kept) == 2  # exactly 0.5 eV/atom above passes


def test_absolute_cap_subtracts_reference_energies():
    pool = [labelled(cuag(), 2.0), labelled(cuag(3.7), 6.0)]  # E/N = 0.5, 1.5 eV/atom
    references = {"Cu": 0.5, "Ag": 1.0}  # 0.75 eV/atom on average
    config = CurationConfig(energy_cap=0.0, energy_mode="absolute")
    kept, report = curate(pool, config, references)
    assert kept == [pool[0]]
    assert "0.75 eV/atom > 0 eV/atom" in report.drops[0].detail
    kept, _ = curate(pool, config)  # without references: raw E/N
    assert kept == []
    with pytest.raises(KeyError, match="Ag"):
        curate(pool, config, {"Cu": 0.5})


def test_default_curation_removes_only_unlabelled_and_duplicates():
    pool, _ = label([cuag(), cuag(3.6), transformed(cuag(), 3)], EMT(), SERIAL)
    kept, report = curate(pool)
    assert kept == pool[:2]
    assert report.drop_counts() == {"duplicate": 1}


# ----------------------------------------------------------------------------- references


def test_reference_energies_use_the_labelling_calculator():
    energies, report = reference_energies(["Cu", "Ag", "Cu"], EMT(), SERIAL)
    assert list(energies) == ["Cu", "Ag"]
    assert report.stage == "reference_energies"
    for symbol, energy in energies.items():
        atom = isolated_atom(symbol)
        atom.calc = AseEMT()
        assert energy == atom.get_potential_energy()
    assert energies["Cu"] == pytest.approx(3.51, abs=0.01)  # EMT's cohesive energy of Cu
    atom = isolated_atom("Cu")
    assert atom.cell.lengths().tolist() == [12.0, 12.5, 13.0]
    assert atom.info["step"] == (
        "isolated_atom")
    assert uuid_of(atom) == uuid_of(isolated_atom("Cu")) != uuid_of(isolated_atom("Cu", 15.0))


def test_reference_energies_report_failures_and_apply_settings():
    faulty = AseCalculator("tests.support.faulty_calculators:FaultyEMT", {"raise_natoms": 1})
    energies, report = reference_energies(["Cu"], faulty, SERIAL)
    assert energies == {}
    assert report.drop_counts() == {"calculator_error": 1}
    spin = StructureSettings(AseCalculator("ase.calculators.emt:EMT"), kpoint_density=3.0)
    energies, _ = reference_energies(["Cu"], spin, SERIAL)
    assert energies["Cu"] == reference_energies(["Cu"], EMT(), SERIAL)[0]["Cu"]
    (atom,), _ = label([isolated_atom("Ni")], spin, SERIAL)
    assert atom.info[SPIN_POLARIZED] is True
    assert atom.info["kpoint_mesh"] == "1 1 1"
    assert atom.get_initial_magnetic_moments().tolist() == [2.0]


def test_curation_config_round_trips_and_validates():
    config = CurationConfig(energy_cap=1.5, force_cap=20, distance=DistanceFilter({"Cu": 1.0}))
    assert config_from_json(config.to_json()) == config
    for kwargs, field in [({"energy_cap": -1.0}, "energy_cap"), ({"energy_mode": "x"},
                          "energy_mode"), ({"force_cap": -1}, "force_cap"),
                          ({"distance": 1.0}, "distance"), ({"duplicate_tolerance": -1},
                          "duplicate_tolerance"), ({"neighbors": 0}, "neighbors")]:
        with pytest.raises(ConfigError, match=field):
            CurationConfig(**kwargs)
    assert CurationConfig(energy_cap=-1.0, energy_mode="absolute").energy_cap == -1.0
