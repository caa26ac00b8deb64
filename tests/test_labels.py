"""Label stage and structure-dependent settings: exact labels, reuse, faults, cache, hook."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.calculator import kptdensity2monkhorstpack
from ase.calculators.emt import EMT as AseEMT
from ase.data import ground_state_magnetic_moments
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiron_assyst.calculators import EMT, AseCalculator, Morse
from pyiron_assyst.calculators.evaluation import LABEL_CALCULATOR, label_is_current
from pyiron_assyst.calculators.structure_settings import (
    KPOINT_DENSITY,
    KPOINT_MESH,
    SPIN_POLARIZED,
    Derived,
    StructureSettings,
    is_isolated_atom,
    kpoints_from_density,
)
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.core.lineage import child_uuid, stamp_root, uuid_of
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.label import label
from pyiron_assyst.stages.relax import VolumeRelax, relax
from tests.support import faulty_calculators

SERIAL = Executor(kind="serial")
EMT_KPTS = AseCalculator("ase.calculators.emt:EMT")


def structures() -> list[Atoms]:
    """Bulk (rattled), a Cu-Ag cell, a slab and a cluster, each a stamped root."""
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=1)
    cuag = bulk("Cu", "fcc", a=3.8, cubic=True)
    cuag.symbols[[1, 2]] = "Ag"
    slab = fcc111("Cu", (2, 2, 2), vacuum=5.0)
    slab.info.clear()  # ase.build's adsorbate bookkeeping
    cluster = Atoms("Cu3", positions=[[0, 0, 0], [2.4, 0, 0], [1.2, 2.0, 0.3]])
    out = [cu, cuag, slab, cluster]
    for i, atoms in enumerate(out):
        stamp_root(atoms, child_uuid("roots", "test", "x", i))
    return out


def direct(atoms: Atoms) -> dict[str, np.ndarray | float]:
    calc = AseEMT()
    work = atoms.copy()
    work.calc = calc
    values = {"energy": work.get_potential_energy(), "forces": work.get_forces()}
    if atoms.pbc.all():
        values["stress"] = work.get_stress()
    return values


def test_labels_equal_plain_ase_and_carry_lineage():
    inputs = structures()
    before = [(a.positions.copy(), dict(a.info)) for a in inputs]
    out, report = label(inputs, EMT(), SERIAL)
    assert (report.stage, report.n_in, report.n_out, report.drops) == ("label", 4, 4, ())
    assert report.force_calls == 4
    config_hash = EMT().config_hash()
    for parent, atoms, (positions, info) in zip(inputs, out, before):
        expected = direct(parent)
        results = atoms.calc.results
        assert results["energy"] == expected["energy"] == results["free_energy"]
        np.testing.assert_array_equal(results["forces"], expected["forces"])
        assert ("stress" in results) == parent.pbc.all()
        if parent.pbc.all():
            np.testing.assert_array_equal(results["stress"], expected["stress"])
        assert atoms.info["uuid"] == child_uuid(uuid_of(parent), "label", config_hash, 0)
        assert (atoms.info["parent"], atoms.info["step"]) == (uuid_of(parent), "label")
        assert atoms.info[LABEL_CALCULATOR] == config_hash
        np.testing.assert_array_equal(parent.positions, positions)  # inputs untouched
        assert parent.info == info
        assert parent.calc is None


def test_free_energy_is_the_calculators_own():
    smeared = AseCalculator("tests.support.faulty_calculators:SmearedEMT", {"shift": 0.25})
    (atoms,), _ = label(structures()[:1], smeared, SERIAL)
    results = atoms.calc.results
    assert results["free_energy"] == pytest.approx(results["energy"] - 0.25 * 4, abs=1e-12)


def test_current_labels_are_reused_and_others_relabelled():
    first, _ = label(structures(), EMT(), SERIAL)
    again, report = label(first, EMT(), SERIAL)
    assert all(a is b for a, b in zip(again, first))
    assert report.force_calls == 0
    forced, report = label(first, EMT(), SERIAL, relabel=True)
    assert report.force_calls == 4
    assert all(a is not b for a, b in zip(forced, first))
    other, report = label(first, Morse(), SERIAL)  # a label of another config is replaced
    assert report.force_calls == 4
    assert all(a.info[LABEL_CALCULATOR] == Morse().config_hash() for a in other)
    assert all(a.info["parent"] == b.info["uuid"] for a, b in zip(other, first))


def test_labels_stay_current_through_a_stored_run(tmp_path):
    from pyiron_assyst.storage import Project

    config = StructureSettings(EMT_KPTS, kpoint_density=2.0, magmoms={"Cu": 1.0})
    first, _ = label(structures(), config, SERIAL)
    project = Project(tmp_path / "p")
    project.save_run("r", stages={"label": first})
    loaded = project.load_stage("r", "label")
    again, report = label(loaded, config, SERIAL)
    assert report.force_calls == 0
    assert all(a is b for a, b in zip(again, loaded))


def test_relaxation_labels_are_reused_and_stale_labels_are_relabelled():
    relaxed, _ = relax(structures()[:2], VolumeRelax(), EMT(), SERIAL)
    assert all(label_is_current(a, EMT().config_hash()) for a in relaxed)  # relax records it
    out, report = label(relaxed, EMT(), SERIAL)
    assert report.force_calls == 0
    assert all(a is b for a, b in zip(out, relaxed))
    fresh, report = label(relaxed, EMT(), SERIAL, relabel=True)
    assert report.force_calls == 2
    for reused, computed in zip(out, fresh):  # same geometry and calculator: same numbers
        assert reused.calc.results["energy"] == computed.calc.results["energy"]
        np.testing.assert_array_equal(reused.calc.results["forces"],
                                      computed.calc.results["forces"])
        np.testing.assert_array_equal(reused.calc.results["stress"],
                                      computed.calc.results["stress"])
    _, report = label(relaxed, Morse(), SERIAL)  # another calculator's relaxation: relabelled
    assert report.force_calls == 2
    moved = out[0].copy()
    moved.calc = out[0].calc
    moved.positions[0, 0] += 0.1
    assert not label_is_current(moved, EMT().config_hash())
    _, report = label([moved], EMT(), SERIAL)
    assert report.force_calls == 1


def test_faults_drop_only_their_structures():
    faulty = AseCalculator("tests.support.faulty_calculators:FaultyEMT",
                           {"raise_natoms": 3, "nan_natoms": 8})
    inputs = structures()  # 4, 4, 8 and 3 atoms
    out, report = label(inputs, faulty, SERIAL)
    assert [len(a) for a in out] == [4, 4]
    assert report.drop_counts() == {"non_finite": 1, "calculator_error": 1}
    assert report.n_out + len(report.drops) == report.n_candidates == 4
    config_hash = faulty.config_hash()
    reasons = {d.uuid: d.reason for d in report.drops}
    assert reasons == {child_uuid(uuid_of(inputs[2]), "label", config_hash, 0): "non_finite",
                       child_uuid(uuid_of(inputs[3]), "label", config_hash, 0):
                           "calculator_error"}
    assert "refuses 3 atoms" in next(d.detail for d in report.drops
                                     if d.reason == "calculator_error")


def test_content_cache_answers_only_unchanged_inputs(tmp_path):
    from pyiron_assyst.execution.cache import ResultCache

    counting = AseCalculator("tests.support.faulty_calculators:CountingEMT")
    cache = ResultCache(tmp_path)
    inputs = structures()

    def evaluations(batch: list[Atoms], config=counting) -> tuple[list[Atoms], int]:
        before = faulty_calculators.CountingEMT.calls
        out, _ = label(batch, config, SERIAL, cache=cache)
        return out, faulty_calculators.CountingEMT.calls - before

    first, calls = evaluations(inputs)
    assert calls == 4
    second, calls = evaluations(inputs)
    assert calls == 0
    for a, b in zip(first, second):
        assert a.info == b.info
        for key, value in a.calc.results.items():
            np.testing.assert_array_equal(value, b.calc.results[key])
    changed = [a.copy() for a in inputs]
    changed[1].positions[0, 2] += 0.01
    assert evaluations(changed)[1] == 1
    other = AseCalculator("tests.support.faulty_calculators:CountingEMT", {"fixed_cutoff": False})
    assert evaluations(inputs, other)[1] == 4


def test_process_pool_gives_bit_identical_labels():
    serial, _ = label(structures(), EMT(), SERIAL)
    pooled, report = label(structures(), EMT(), Executor(kind="process", max_workers=2))
    assert report.n_out == 4
    for a, b in zip(serial, pooled):
        assert a.info == b.info
        for key, value in a.calc.results.items():
            np.testing.assert_array_equal(value, b.calc.results[key])


# ----------------------------------------------------------------------------- settings


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(2.0, 12.0), min_size=3, max_size=3),
       st.lists(st.floats(60.0, 120.0), min_size=3, max_size=3),
       st.floats(0.5, 8.0), st.booleans(), st.lists(st.booleans(), min_size=3, max_size=3))
def test_kpoints_follow_ase_density_convention(lengths, angles, density, even, pbc):
    from ase.geometry import cellpar_to_cell

    try:
        cell = cellpar_to_cell([*lengths, *angles])
    except (ValueError, AssertionError):
        return
    if not np.isfinite(cell).all() or abs(np.linalg.det(cell)) < 1.0:
        return
    atoms = Atoms("Cu", cell=cell, pbc=pbc)
    expected = kptdensity2monkhorstpack(atoms, density, even)
    assert kpoints_from_density(cell, density, pbc, even) == tuple(int(k) for k in expected)


def test_kpoint_density_is_points_per_inverse_angstrom():
    assert kpoints_from_density(np.diag([4.0, 2.0, 10.0]), 3.0) == (
        math.ceil(2 * math.pi / 4 * 3), math.ceil(2 * math.pi / 2 * 3),
        math.ceil(2 * math.pi / 10 * 3))
    with pytest.raises(ValueError, match="density"):
        kpoints_from_density(np.eye(3), 0.0)


def test_isolated_atoms_are_single_atoms_far_from_their_images():
    assert is_isolated_atom(Atoms("Fe", cell=[10, 10, 10], pbc=True), 8.0)
    assert not is_isolated_atom(Atoms("Fe", cell=[10, 10, 7], pbc=True), 8.0)
    assert is_isolated_atom(Atoms("Fe"), 8.0)
    assert not is_isolated_atom(bulk("Fe"), 8.0)
    assert not is_isolated_atom(Atoms("Fe2", positions=[[0, 0, 0], [9, 0, 0]]), 8.0)


def test_settings_derive_mesh_moments_and_spin():
    config = StructureSettings(EMT_KPTS, kpoint_density=3.0, magmoms={"Fe": 2.5},
                               spin_parameters={"ispin": 2})
    feal = bulk("Fe", "bcc", a=2.9, cubic=True)
    feal.symbols[1] = "Al"
    derived = config.derive(feal)
    assert derived == Derived(kpoints_from_density(feal.cell, 3.0), (2.5, 0.0), True, False)
    assert config.parameters_for(feal) == {"kpts": derived.kpts, "ispin": 2}
    al = bulk("Al", cubic=True)
    assert config.derive(al).spin_polarized is False
    assert config.parameters_for(al) == {"kpts": config.derive(al).kpts}
    atom = Atoms("O", cell=[12, 12.5, 13], pbc=True)
    assert config.derive(atom) == Derived((1, 1, 1), (float(ground_state_magnetic_moments[8]),),
                                          True, True)
    fixed = StructureSettings(EMT_KPTS, isolated_magmoms={"O": 1.0})
    assert fixed.derive(atom) == Derived(None, (1.0,), True, True)
    off = StructureSettings(EMT_KPTS, isolated_spin_polarized=False)
    assert off.derive(atom) == Derived(None, None, False, True)


def test_settings_reach_the_calculator_and_are_recorded_on_labels():
    config = StructureSettings(EMT_KPTS, kpoint_density=2.5, magmoms={"Cu": 0.5},
                               spin_parameters={"spinpol": True})
    inputs = structures()[:2]
    calc = config.calculator_for(inputs[0])
    assert calc.parameters["kpts"] == kpoints_from_density(inputs[0].cell, 2.5)
    assert calc.parameters["spinpol"] is True
    reused = StructureSettings(AseCalculator("ase.calculators.emt:EMT", reuse=True),
                               kpoint_density=2.5)
    assert reused.calculator_for(inputs[1]).parameters["kpts"] == kpoints_from_density(
        inputs[1].cell, 2.5)
    out, report = label(inputs, config, SERIAL)
    assert report.n_out == 2
    for parent, atoms in zip(inputs, out):
        mesh = kpoints_from_density(parent.cell, 2.5)
        assert atoms.info[KPOINT_MESH] == " ".join(map(str, mesh))
        assert atoms.info[KPOINT_DENSITY] == 2.5
        assert atoms.info[SPIN_POLARIZED] is True
        expected = [0.5 if s == "Cu" else 0.0 for s in parent.get_chemical_symbols()]
        np.testing.assert_array_equal(atoms.get_initial_magnetic_moments(), expected)
        assert "initial_magmoms" not in parent.arrays
        # EMT ignores the extra parameters: the numbers are those of plain EMT
        assert atoms.calc.results["energy"] == direct(parent)["energy"]


@dataclass(frozen=True)
class BrokenSettings(StructureSettings):
    """Settings whose derivation fails for structures with more than four atoms."""

    def derive(self, atoms: Atoms) -> Derived:
        if len(atoms) > 4:
            raise RuntimeError("no settings for large cells")
        return super().derive(atoms)


def test_a_failing_settings_hook_drops_only_its_structure():
    out, report = label(structures(), BrokenSettings(EMT_KPTS, kpoint_density=2.0), SERIAL)
    assert [len(a) for a in out] == [4, 4, 3]
    assert report.drop_counts() == {"calculator_error": 1}
    assert "no settings for large cells" in report.drops[0].detail


def test_settings_config_round_trips_and_validates():
    config = StructureSettings(EMT(), kpoint_density=4, magmoms={"Fe": 2.0, "Co": 1.5},
                               spin_parameters={"ispin": 2})
    assert config.magmoms == (("Co", 1.5), ("Fe", 2.0))
    assert config_from_json(config.to_json()) == config
    assert hash(config) == hash(config_from_json(config.to_json()))
    assert config.config_hash() != StructureSettings(EMT(), kpoint_density=5).config_hash()
    for kwargs, field in [({"kpoint_density": 0}, "kpoint_density"),
                          ({"magmoms": {"Xx": 1.0}}, "magmoms"),
                          ({"magmoms": {"Fe": math.nan}}, "magmoms"),
                          ({"kpoints_parameter": "k pts"}, "kpoints_parameter"),
                          ({"isolated_distance": 0}, "isolated_distance")]:
        with pytest.raises(ConfigError, match=field):
            StructureSettings(EMT(), **kwargs)
    with pytest.raises(ConfigError, match="base"):
        StructureSettings(config)
