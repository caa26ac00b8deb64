"""Relaxation stage: agreement with plain ASE, preserved invariants, lineage, faults, dispatch."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import spglib
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT as AseEMT
from ase.constraints import FixAtoms
from ase.filters import FrechetCellFilter
from ase.optimize import LBFGS
from ase.spacegroup import crystal
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiron_assyst.calculators import EMT, AseCalculator
from pyiron_assyst.calculators.evaluation import evaluate
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.core.lineage import stamp_root, uuid_of
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.numerics.cell import serial_blas
from pyiron_assyst.stages.relax import (
    CellRelax,
    FullRelax,
    PositionRelax,
    Relaxation,
    SymmetryRelax,
    VolumeRelax,
    relax,
)
from tests.support import faulty_calculators
from tests.support.relaxers import GoldenVolumeRelax

SERIAL = Executor(kind="serial")
PROCESS = Executor(kind="process", max_workers=2)


# ----------------------------------------------------------------------------- structures
def strained_cu() -> Atoms:
    """Cubic fcc Cu (4 atoms), sheared and rattled: every relaxation has work to do."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    strain = [[1.03, 0.02, 0.0], [0.02, 0.98, 0.01], [0.0, 0.01, 1.01]]
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(0.03, seed=7)
    return atoms


def _crystal(symbols: list[str], basis: list[tuple[float, float, float]], group: int,
             cellpar: list[float]) -> Atoms:
    atoms = crystal(symbols, basis, spacegroup=group, cellpar=cellpar)
    atoms.info.clear()  # drop ase.spacegroup's bookkeeping
    return atoms


def triclinic() -> Atoms:
    """Cu2Ag2 in P-1, as a sampled crystal might be."""
    return _crystal(["Cu", "Ag"], [(0.1, 0.2, 0.3), (0.6, 0.7, 0.1)], 2,
                    [4.0, 4.3, 4.6, 80, 95, 105])


def low_symmetry_crystals() -> list[Atoms]:
    """Sampled-like crystals with general Wyckoff positions in several space groups."""
    return [
        triclinic(),
        _crystal(["Cu"], [(0.12, 0.27, 0.31)], 5, [6.5, 4.2, 4.6, 90, 104, 90]),
        _crystal(["Cu"], [(0.13, 0.21, 0.34)], 14, [5.0, 4.4, 6.3, 90, 98, 90]),
        _crystal(["Cu", "Au"], [(0.0, 0.0, 0.0), (0.5, 0.5, 0.37)], 99,
                 [3.0, 3.0, 3.8, 90, 90, 90]),
        _crystal(["Ag"], [(0.1, 0.2, 0.15)], 146, [6.0, 6.0, 5.0, 90, 90, 120]),
    ]


def cu_supercell(n: int) -> Atoms:
    """``n`` Cu atoms in a rattled fcc supercell."""
    atoms = bulk("Cu", "fcc", a=3.6) * (n, 1, 1)
    atoms.rattle(0.05, seed=n)
    return atoms


# ------------------------------------------------------------------------- custom engines
@dataclass(frozen=True)
class BrokenRelax(Relaxation):
    """A hook that breaks the contract (returns the atoms instead of a Minimization)."""

    kind: ClassVar[str] = "broken"

    def minimize(self, atoms, calculator):  # type: ignore[override]
        return atoms


# --------------------------------------------------------------------------- helpers
def direct_ase(atoms: Atoms, dof, fmax: float = 1e-3, steps: int = 100):
    """Relax a copy with plain ASE: LBFGS on ``dof(atoms)``; returns (atoms, converged, steps)."""
    atoms = atoms.copy()
    atoms.calc = AseEMT()
    optimizer = LBFGS(dof(atoms), logfile=None)
    with serial_blas():  # else scipy's 3x3 logm may take 100 ms on a busy machine
        converged = optimizer.run(fmax=fmax, steps=steps)
    return atoms, converged, optimizer.nsteps


def fix_all(atoms: Atoms) -> Atoms:
    atoms.set_constraint(FixAtoms(mask=[True] * len(atoms)))
    return atoms


def assert_same_structures(left: list[Atoms], right: list[Atoms]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.cell.array, b.cell.array)
        assert np.array_equal(a.numbers, b.numbers)
        assert a.info == b.info
        assert set(a.calc.results) == set(b.calc.results)
        for key, value in a.calc.results.items():
            assert np.array_equal(value, b.calc.results[key]), key


# ---------------------------------------------------------------- agreement with plain ASE
@pytest.mark.parametrize(("config", "dof"), [
    (PositionRelax(), lambda a: a),
    (VolumeRelax(), lambda a: FrechetCellFilter(fix_all(a), hydrostatic_strain=True)),
    (CellRelax(), lambda a: FrechetCellFilter(fix_all(a), constant_volume=True)),
    (FullRelax(), FrechetCellFilter),
    (FullRelax(pressure=3.0), lambda a: FrechetCellFilter(a, scalar_pressure=3.0 * units.GPa)),
], ids=["position", "volume", "cell", "full", "full-3GPa"])
def test_energy_and_steps_match_a_direct_ase_relaxation(config, dof):
    start = strained_cu()
    (out,), report = relax([start], config, EMT(), SERIAL)
    reference, converged, steps = direct_ase(start, dof)
    assert out.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-6)
    assert np.allclose(out.positions, reference.positions, atol=1e-6)
    assert np.allclose(out.cell.array, reference.cell.array, atol=1e-6)
    assert out.info["converged"] is bool(converged) is True
    assert out.info["relax_steps"] == steps > 0
    assert report.stage == config.step == f"relax:{config.kind}"


def test_relaxed_fcc_cu_energy_equals_plain_ase():
    (out,), _ = relax([bulk("Cu", "fcc", a=3.5)], FullRelax(), EMT(), SERIAL)
    reference, _, _ = direct_ase(bulk("Cu", "fcc", a=3.5), FrechetCellFilter)
    assert out.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-6)
    assert out.get_potential_energy() == pytest.approx(-0.007036, abs=1e-6)  # EMT, fixed cutoff
    assert out.get_volume() == pytest.approx(11.5654, abs=1e-3)  # Å³/atom at EMT's minimum


def test_output_carries_single_point_lineage_and_info_without_constraints():
    start = strained_cu()
    stamp_root(start, "00000000-0000-0000-0000-000000000001")
    before = (start.positions.copy(), start.cell.array.copy(), dict(start.info))
    (out,), report = relax([start], SymmetryRelax(), EMT(), SERIAL)
    assert (np.array_equal(start.positions, before[0]))
    assert (np.array_equal(start.cell, before[1]))
    assert (start.info == before[2])
    assert (start.calc is None)
    assert out.constraints == []
    assert set(out.calc.results) == {"energy", "free_energy", "forces", "stress"}
    fresh = out.copy()
    fresh.calc = AseEMT()
    assert out.get_potential_energy() == pytest.approx(fresh.get_potential_energy(), abs=1e-12)
    assert np.allclose(out.get_forces(), fresh.get_forces(), atol=1e-12)
    assert np.allclose(out.get_stress(), fresh.get_stress(), atol=1e-12)
    assert out.info["parent"] == out.info["root"] == out.info["ancestry"] == uuid_of(start)
    assert out.info["step"] == "relax:symmetry"
    assert out.info["uuid"] != uuid_of(start)
    assert out.info["force_calls"] == report.force_calls == out.info["relax_steps"] + 1


# ---------------------------------------------------------------------- invariants
def test_volume_relax_keeps_cell_shape_and_fractional_positions():
    start = triclinic()
    (out,), _ = relax([start], VolumeRelax(), EMT(), SERIAL)
    nonzero = np.abs(start.cell.array) > 1e-6
    scale = out.cell.array[nonzero] / start.cell.array[nonzero]
    assert np.allclose(scale, scale[0], rtol=0, atol=1e-8)
    assert abs(scale[0] - 1) > 1e-2
    assert np.allclose(out.get_scaled_positions(), start.get_scaled_positions(), atol=1e-10)
    assert out.info["converged"]


def test_cell_relax_keeps_volume_and_fractional_positions():
    start = triclinic()
    (out,), _ = relax([start], CellRelax(), EMT(), SERIAL)
    assert out.get_volume() == pytest.approx(start.get_volume(), rel=1e-6)
    assert np.allclose(out.get_scaled_positions(), start.get_scaled_positions(), atol=1e-10)
    assert np.abs(out.cell.array - start.cell.array).max() > 1e-2  # the shape did change
    start.calc = AseEMT()
    assert out.get_potential_energy() < start.get_potential_energy()


def _symmetry_kept(before: Atoms, after: Atoms, tol: float = 1e-5) -> bool:
    """Every spglib operation of ``before`` is an isometry mapping ``after`` onto itself."""
    dataset = spglib.get_symmetry_dataset(
        (before.cell.array, before.get_scaled_positions(), before.numbers), symprec=tol)
    metric = after.cell.array @ after.cell.array.T
    frac, numbers = after.get_scaled_positions(), after.numbers
    for rotation, translation in zip(dataset.rotations, dataset.translations):
        if not np.allclose(rotation.T @ metric @ rotation, metric, atol=1e-6):
            return False
        image = frac @ rotation.T + translation
        for position, number in zip(image, numbers):
            delta = frac[numbers == number] - position
            if not np.any(np.abs(delta - np.round(delta)).max(axis=1) < 1e-6):
                return False
    return True


def test_symmetry_relax_keeps_every_symmetry_operation():
    starts = low_symmetry_crystals()
    outs, report = relax(starts, SymmetryRelax(max_steps=40), EMT(), SERIAL)
    assert report.n_out == len(starts)
    assert not report.drops
    for start, out in zip(starts, outs):
        cell = (start.cell.array, start.get_scaled_positions(), start.numbers)
        relaxed = (out.cell.array, out.get_scaled_positions(), out.numbers)
        # every operation is kept; a relaxation may reach a supergroup (R3m -> R-3m here)
        before = spglib.get_symmetry_dataset(cell, symprec=1e-5)
        after = spglib.get_symmetry_dataset(relaxed, symprec=1e-5)
        assert len(after.rotations) >= len(before.rotations)
        assert _symmetry_kept(start, out)
        assert abs(out.get_volume() / start.get_volume() - 1) > 1e-3  # it did relax


def test_full_relax_reaches_the_force_tolerance_on_atoms_and_cell():
    (out,), _ = relax([strained_cu()], FullRelax(force_tolerance=1e-4), EMT(), SERIAL)
    assert out.info["converged"]
    assert np.linalg.norm(out.get_forces(), axis=1).max() < 1e-4
    virial_per_atom = np.abs(out.get_stress(voigt=False)).max() * out.get_volume() / len(out)
    assert virial_per_atom < 2e-4


def test_pressure_shifts_the_equilibrium_volume_the_right_way():
    start = [bulk("Cu", "fcc", a=3.6)]
    (free,), _ = relax(start, FullRelax(), EMT(), SERIAL)
    (squeezed,), _ = relax(start, FullRelax(pressure=5.0), EMT(), SERIAL)
    (stretched,), _ = relax(start, VolumeRelax(pressure=-2.0), EMT(), SERIAL)
    assert squeezed.get_volume() < free.get_volume() < stretched.get_volume()
    # at equilibrium under pressure p the stress is -p (ASE sign), to the force tolerance
    assert np.allclose(squeezed.get_stress()[:3] / units.GPa, -5.0, atol=0.03)
    assert np.allclose(stretched.get_stress()[:3] / units.GPa, 2.0, atol=0.03)


# ------------------------------------------------------------ non-periodic directions
def _layer() -> Atoms:
    slab = fcc111("Cu", (1, 1, 3), a=3.7, vacuum=5.0)
    slab.pbc = (True, True, False)
    slab.info.clear()  # drop ase.build's adsorbate bookkeeping
    slab.set_cell(slab.cell.array * [[1.05], [1.0], [1.0]], scale_atoms=True)  # stretch a
    return slab


def _rod() -> Atoms:
    """A Cu chain along z, stretched."""
    return Atoms("Cu2", positions=[[5.0, 5.0, 0.0], [5.0, 5.0, 1.5]], cell=[10.0, 10.5, 3.2],
                 pbc=(False, False, True))


def _tilted(atoms: Atoms) -> Atoms:
    tilted = atoms.copy()
    tilted.rotate(35, (1, 2, 3), rotate_cell=True)
    return tilted


@pytest.mark.parametrize("config", [VolumeRelax(), CellRelax(), FullRelax()],
                         ids=["volume", "cell", "full"])
def test_only_periodic_directions_are_strained(config):
    starts = [_layer(), _tilted(_layer()), _rod(), _tilted(_rod())]
    outs, report = relax(starts, config, EMT(), SERIAL)
    assert report.n_out == 4
    assert all(o.info["converged"] for o in outs)
    for start, out in zip(starts, outs):
        vacuum = ~start.pbc
        assert np.allclose(out.cell.array[vacuum], start.cell.array[vacuum], atol=1e-12)
        assert "stress" not in out.calc.results
    # a rotated copy relaxes to the same energy as the aligned one (to what 1e-3 eV/Å allows)
    assert outs[1].get_potential_energy() == pytest.approx(outs[0].get_potential_energy(),
                                                           abs=1e-6)
    assert outs[3].get_potential_energy() == pytest.approx(outs[2].get_potential_energy(),
                                                           abs=1e-6)
    layer, start = outs[0], starts[0]
    probe = layer.copy()
    probe.calc = AseEMT()
    virial = -probe.get_stress(voigt=False) * probe.get_volume() / len(probe)  # eV per atom
    area = np.linalg.norm(np.cross(*layer.cell.array[:2]))
    start_area = np.linalg.norm(np.cross(*start.cell.array[:2]))
    if isinstance(config, VolumeRelax):  # uniform in-plane scaling only
        scale = np.linalg.norm(layer.cell.array[0]) / np.linalg.norm(start.cell.array[0])
        assert np.allclose(layer.cell.array[:2], scale * start.cell.array[:2], atol=1e-10)
        assert abs(scale - 1) > 1e-3
        assert abs(virial[0, 0] + virial[1, 1]) < 2e-3  # stationary under in-plane scaling
        assert abs(virial[2, 2]) > 1e-2  # ... which the vacuum direction's virial is not
    if isinstance(config, CellRelax):  # shape changes at constant area; a rod cannot change
        assert area == pytest.approx(start_area, rel=1e-8)
        assert np.abs(layer.cell.array - start.cell.array).max() > 1e-3
        assert abs(virial[0, 0] - virial[1, 1]) < 2e-3
        assert abs(virial[0, 1]) < 2e-3
        assert np.allclose(outs[2].cell.array, starts[2].cell.array, atol=0)


def test_clusters_have_no_cell_degrees_of_freedom():
    cluster = Atoms("Cu4", positions=[[0, 0, 0], [2.4, 0, 0], [0, 2.4, 0], [0, 0, 2.4]])
    (full,), _ = relax([cluster], FullRelax(pressure=5.0), EMT(), SERIAL)
    (positions,), _ = relax([cluster], PositionRelax(), EMT(), SERIAL)
    (volume,), _ = relax([cluster], VolumeRelax(), EMT(), SERIAL)
    assert full.get_potential_energy() == positions.get_potential_energy()
    assert np.array_equal(full.cell.array, cluster.cell.array)
    assert volume.info["relax_steps"] == 0
    assert np.array_equal(volume.positions, cluster.positions)
    out, report = relax([cluster], SymmetryRelax(), EMT(), SERIAL)
    assert out == []
    assert report.drops[0].reason == "calculator_error"
    assert "full-rank cell" in report.drops[0].detail


# ------------------------------------------------------------- convergence and counting
def test_force_calls_count_every_real_evaluation_and_nothing_else():
    calculator = AseCalculator("tests.support.faulty_calculators:CountingEMT")
    starts = [strained_cu(), triclinic(), bulk("Cu", "fcc", a=3.61)]
    before = faulty_calculators.CountingEMT.calls
    outs, report = relax(starts, FullRelax(max_steps=30), calculator, SERIAL)
    real = faulty_calculators.CountingEMT.calls - before
    assert report.force_calls == real == sum(o.info["force_calls"] for o in outs)
    # LBFGS: one evaluation per step plus the first; labelling reuses the last one
    assert [o.info["force_calls"] for o in outs] == [o.info["relax_steps"] + 1 for o in outs]
    assert 0 < report.calculator_time < report.wall_time


def test_a_relaxation_starts_from_its_inputs_current_single_point():
    """The full relaxation after a volume one needs no first force call (issue 7)."""
    calculator = AseCalculator("tests.support.faulty_calculators:CountingEMT")
    volume, _ = relax([strained_cu(), triclinic()], VolumeRelax(), calculator, SERIAL)
    assert all(v.info["label_calculator"] == calculator.config_hash() for v in volume)
    unlabelled = [v.copy() for v in volume]  # same geometry and info, no single point
    primed, report = relax(volume, FullRelax(), calculator, SERIAL)
    cold, cold_report = relax(unlabelled, FullRelax(), calculator, SERIAL)
    assert cold_report.force_calls - report.force_calls == 2  # one saved per structure
    assert [o.info["force_calls"] for o in primed] == [o.info["relax_steps"] for o in primed]
    for a, b in zip(primed, cold):  # the same trajectory, bit for bit
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
        assert a.get_potential_energy() == b.get_potential_energy()
    _, other = relax(volume, FullRelax(), EMT(), SERIAL)  # another config: evaluated again
    assert other.force_calls == cold_report.force_calls


@pytest.mark.parametrize("keep", [True, False])
def test_unconverged_structures_are_flagged_or_dropped(keep):
    starts = [strained_cu(), bulk("Cu", "fcc", a=3.6), triclinic()]
    outs, report = relax(starts, PositionRelax(max_steps=1, keep_unconverged=keep), EMT(),
                         SERIAL)
    # perfect fcc has zero forces: converged after 0 steps
    perfect = [o for o in outs if o.info["relax_steps"] == 0]
    assert len(perfect) == 1
    assert perfect[0].info["converged"]
    unconverged = {uuid_of(starts[0]), uuid_of(starts[2])}
    listed = report.flagged if keep else report.drops
    assert [d.reason for d in listed] == ["not_converged"] * 2
    assert {o.info["parent"] for o in outs if not o.info["converged"]} == (
        unconverged if keep else set())
    assert all(o.info["relax_steps"] == 1 for o in outs if not o.info["converged"])
    assert report.n_out == (3 if keep else 1)
    assert report.n_candidates == 3
    if keep:  # the flag names the structure that was kept
        assert {d.uuid for d in listed} == {o.info["uuid"] for o in outs} - {
            perfect[0].info["uuid"]}


def test_trace_snapshots_are_labelled_children_of_the_input():
    starts = [strained_cu(), triclinic()]
    config = FullRelax(trace=3, max_steps=40)
    outs, report = relax(starts, config, EMT(), SERIAL)
    finals = [o for o in outs if o.info["step"] == "relax:full"]
    snapshots = [o for o in outs if o.info["step"] == "relax:full:trace"]
    assert len(finals) == 2
    assert len(snapshots) > 2
    assert report.n_candidates == 2 + len(snapshots) == report.n_out
    for start, final in zip(starts, finals):
        mine = [s for s in snapshots if s.info["parent"] == uuid_of(start)]
        indices = [s.info["trace_index"] for s in mine]
        assert indices == list(range(3, final.info["relax_steps"], 3))
        position = outs.index(final)  # final first, then its snapshots in step order
        assert outs[position + 1:position + 1 + len(mine)] == mine
        for snapshot in mine:
            assert snapshot.info["root"] == uuid_of(start) == snapshot.info["ancestry"]
            assert not {"converged", "relax_steps", "force_calls"} & set(snapshot.info)
            fresh = snapshot.copy()
            fresh.calc = AseEMT()
            assert snapshot.get_potential_energy() == pytest.approx(
                fresh.get_potential_energy(), abs=1e-12)
            assert np.allclose(snapshot.get_stress(), fresh.get_stress(), atol=1e-12)
    uuids = [o.info["uuid"] for o in outs]
    assert len(set(uuids)) == len(uuids)
    again, _ = relax(starts, config, EMT(), SERIAL)
    other, _ = relax(starts, config, EMT(fixed_cutoff=False), SERIAL)
    assert [o.info["uuid"] for o in again] == uuids  # derived, not drawn
    assert not set(uuids) & {o.info["uuid"] for o in other}


def test_stages_chain_and_relaxed_snapshots_lose_their_trace_index():
    volume, _ = relax([strained_cu()], VolumeRelax(trace=1, max_steps=3), EMT(), SERIAL)
    assert [o.info["step"] for o in volume] == ["relax:volume"] + ["relax:volume:trace"] * 2
    full, report = relax(volume, FullRelax(), EMT(), SERIAL)
    assert report.n_out == 3
    assert all(o.info["converged"] for o in full)
    for parent, child in zip(volume, full):
        assert child.info["step"] == "relax:full"
        assert "trace_index" not in child.info
        assert child.info["ancestry"] == f"{parent.info['parent']};{parent.info['uuid']}"


# ---------------------------------------------------------------------------- faults
def test_faulty_calculators_drop_only_their_structures():
    calculator = AseCalculator("tests.support.faulty_calculators:FaultyEMT",
                               kwargs={"raise_natoms": 2, "nan_natoms": 3, "nan_after": 2})
    starts = [cu_supercell(1), cu_supercell(2), strained_cu(), cu_supercell(3), cu_supercell(1)]
    outs, report = relax(starts, PositionRelax(), calculator, SERIAL)
    assert [len(o) for o in outs] == [1, 4, 1]
    assert [o.info["parent"] for o in outs] == [uuid_of(s) for s in (starts[0], starts[2],
                                                                     starts[4])]
    assert [d.reason for d in report.drops] == ["calculator_error", "non_finite"]
    assert "FaultyEMT refuses 2 atoms" in report.drops[0].detail
    assert "non-finite forces" in report.drops[1].detail
    assert report.failures == report.drops
    assert report.n_candidates == 5
    # the failing structures' evaluations count too: 1 (raised) + 3 (NaN on the third)
    assert report.force_calls == sum(o.info["force_calls"] for o in outs) + 1 + 3


def test_single_point_evaluation_is_metered_and_guarded():
    faulty = AseCalculator("tests.support.faulty_calculators:FaultyEMT",
                           kwargs={"raise_natoms": 2, "nan_natoms": 3})
    start = strained_cu()
    good = evaluate(start, faulty)
    assert good.ok
    assert good.force_calls == 1
    assert start.calc is None
    fresh = start.copy()
    fresh.calc = AseEMT()
    assert good.value.get_potential_energy() == fresh.get_potential_energy()
    assert np.array_equal(good.value.get_stress(), fresh.get_stress())
    raised, nan = evaluate(cu_supercell(2), faulty), evaluate(cu_supercell(3), faulty)
    assert (raised.reason, raised.value, raised.force_calls) == ("calculator_error", None, 1)
    assert (nan.reason, nan.force_calls) == ("non_finite", 1)


def test_a_broken_hook_is_reported_not_raised():
    outs, report = relax([strained_cu()], BrokenRelax(), EMT(), SERIAL)
    assert outs == []
    assert report.drops[0].reason == "calculator_error"
    assert "must return a Minimization" in report.drops[0].detail


def test_free_energy_comes_from_the_calculator():
    smeared = AseCalculator("tests.support.faulty_calculators:SmearedEMT", kwargs={"shift": 0.1})
    (out,), _ = relax([strained_cu()], PositionRelax(), smeared, SERIAL)
    results = out.calc.results
    assert results["free_energy"] == pytest.approx(results["energy"] - 0.4, abs=1e-12)
    (plain,), _ = relax([strained_cu()], PositionRelax(), EMT(), SERIAL)
    assert plain.calc.results["free_energy"] == plain.calc.results["energy"]


# ----------------------------------------------------------------- custom engine, dispatch
def test_a_custom_minimize_plugs_into_relax():
    start = [bulk("Cu", "fcc", a=3.5)]
    (golden,), report = relax(start, GoldenVolumeRelax(), EMT(), SERIAL)
    (volume,), _ = relax(start, VolumeRelax(force_tolerance=1e-6), EMT(), SERIAL)
    assert golden.info["step"] == report.stage == "relax:golden"
    assert golden.info["converged"]
    assert golden.get_volume() == pytest.approx(
        volume.get_volume(), rel=1e-5)
    # two bracket points, one per step, one final: nothing uncounted, nothing wasted
    assert golden.info["force_calls"] == golden.info["relax_steps"] + 3


def test_serial_and_process_pool_give_bit_identical_results():
    starts = [strained_cu(), triclinic(), bulk("Cu", "fcc", a=3.5), _layer()]
    config = FullRelax(trace=4, max_steps=30)
    serial, serial_report = relax(starts, config, EMT(), SERIAL)
    pooled, pooled_report = relax(starts, config, EMT(), PROCESS)
    assert_same_structures(serial, pooled)
    for field in ("n_in", "n_candidates", "n_out", "drops", "flagged", "force_calls"):
        assert getattr(serial_report, field) == getattr(pooled_report, field)
    golden_serial, _ = relax(starts[2:3], GoldenVolumeRelax(), EMT(), SERIAL)
    golden_pooled, _ = relax(starts[2:3] * 2, GoldenVolumeRelax(), EMT(), PROCESS)
    assert_same_structures(golden_serial * 2, golden_pooled)


def test_default_executor_and_empty_input():
    (out,), report = relax([bulk("Cu", "fcc", a=3.6)], VolumeRelax(), EMT())
    assert out.info["converged"]
    assert report.n_out == 1
    outs, report = relax([], FullRelax(), EMT(), SERIAL)
    assert outs == []
    assert (report.n_in, report.n_candidates, report.n_out) == (0, 0, 0)


# ---------------------------------------------------------------------------- configs
CONFIGS = [
    PositionRelax(), VolumeRelax(pressure=1.5), CellRelax(optimizer="FIRE"),
    SymmetryRelax(symprec=1e-3, trace=2), FullRelax(keep_unconverged=False, max_steps=7),
    GoldenVolumeRelax(upper=1.2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_configs_are_hashable_picklable_and_round_trip(config):
    again = config_from_json(config.to_json())
    assert again == config
    assert hash(again) == hash(config)
    assert again.config_hash() == config.config_hash()
    assert pickle.loads(pickle.dumps(config)) == config


def test_equal_values_give_equal_configs_and_kinds_differ():
    assert FullRelax(pressure=1) == FullRelax(pressure=1.0)
    assert FullRelax(pressure=1).config_hash() == FullRelax(pressure=1.0).config_hash()
    assert FullRelax().config_hash() != SymmetryRelax().config_hash()
    assert len({c.step for c in CONFIGS}) == len(CONFIGS)
    assert VolumeRelax(pressure=2.0).scalar_pressure == pytest.approx(2.0 * units.GPa)


@settings(max_examples=30, deadline=None)
@given(pressure=st.floats(-50, 50), tolerance=st.floats(1e-6, 1.0), steps=st.integers(1, 10**6),
       trace=st.integers(0, 100), keep=st.booleans(),
       optimizer=st.sampled_from(["LBFGS", "BFGS", "FIRE", "BFGSLineSearch"]))
def test_any_valid_config_round_trips(pressure, tolerance, steps, trace, keep, optimizer):
    config = FullRelax(pressure=pressure, force_tolerance=tolerance, max_steps=steps,
                       trace=trace, keep_unconverged=keep, optimizer=optimizer)
    again = config_from_json(config.to_json())
    assert again == config
    assert again.config_hash() == config.config_hash()


@pytest.mark.parametrize(("cls", "kwargs"), [
    (FullRelax, {"force_tolerance": -1e-3}),
    (FullRelax, {"force_tolerance": 0.0}),
    (FullRelax, {"force_tolerance": float("nan")}),
    (FullRelax, {"optimizer": "Newton"}),
    (FullRelax, {"max_steps": 0}),
    (FullRelax, {"max_steps": 2.5}),
    (FullRelax, {"max_steps": True}),
    (FullRelax, {"trace": -1}),
    (FullRelax, {"keep_unconverged": "yes"}),
    (FullRelax, {"pressure": float("inf")}),
    (FullRelax, {"pressure": "1"}),
    (PositionRelax, {"pressure": 1.0}),
    (CellRelax, {"pressure": 1.0}),
    (SymmetryRelax, {"symprec": 0.0}),
    (Relaxation, {}),
])
def test_bad_values_fail_at_construction(cls, kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs), "kind")):
        cls(**kwargs)


# --------------------------------------------------------------------------- pre-relaxation


def _rattled_cu() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.9) * (2, 1, 1)
    atoms.rattle(0.1, seed=2)
    return stamp_root(atoms, "00000000-0000-4000-8000-0000000000a1")


def test_added_relaxation_fields_leave_every_earlier_identity_alone():
    """``calculator``, ``pre_relax`` and ``pre_relax_steps`` came later: at their defaults they
    are not in the JSON or the hash (values from before they existed)."""
    from pyiron_assyst.calculators import Morse

    assert FullRelax().config_hash() == "8f2caf5089bf8e4f"
    assert VolumeRelax(max_steps=7).config_hash() == "51f1d8e4ee792286"
    assert "pre_relax" not in FullRelax().to_json()
    changed = FullRelax(pre_relax=Morse(), pre_relax_steps=50, calculator=EMT())
    assert config_from_json(changed.to_json()) == changed
    assert len({changed.config_hash(), FullRelax(pre_relax=Morse()).config_hash(),
                FullRelax().config_hash()}) == 3
    for bad, field in (({"pre_relax": "CHGNet"}, "pre_relax"),
                       ({"pre_relax_steps": 0}, "pre_relax_steps"),
                       ({"calculator": FullRelax()}, "calculator")):
        with pytest.raises(ConfigError, match=f"FullRelax.{field} must be"):
            FullRelax(**bad)


def test_pre_relaxing_with_the_same_calculator_leaves_nothing_to_do():
    atoms = _rattled_cu()
    (plain,), plain_report = relax([atoms], FullRelax(), EMT(), Executor(kind="serial"))
    (pre,), report = relax([atoms], FullRelax(pre_relax=EMT()), EMT(), Executor(kind="serial"))
    assert pre.info["pre_relax_steps"] == plain.info["relax_steps"] > 10
    assert pre.info["pre_relax_converged"] is True
    assert pre.info["relax_steps"] == 0
    assert report.force_calls == pre.info["force_calls"] == 1  # the EMT check of the end point
    assert pre.get_potential_energy() == plain.get_potential_energy()
    np.testing.assert_array_equal(pre.positions, plain.positions)
    assert plain_report.force_calls == plain.info["force_calls"] > 10


def test_a_cheap_pre_relaxation_saves_force_calls_of_the_stage_calculator():
    from pyiron_assyst.calculators import Morse

    atoms = _rattled_cu()
    (plain,), plain_report = relax([atoms], FullRelax(), EMT(), Executor(kind="serial"))
    (pre,), report = relax([atoms], FullRelax(pre_relax=Morse()), EMT(),
                           Executor(kind="serial"))
    assert pre.info["converged"]
    assert pre.info["pre_relax_steps"] > 5
    assert report.force_calls <= plain_report.force_calls / 3  # measured 5 against 27
    assert pre.get_potential_energy() == pytest.approx(plain.get_potential_energy(), abs=1e-5)
    assert pre.info["label_calculator"] == EMT().config_hash()  # labels are the stage's
    # the next relaxation of the output has no pre-relaxation: the keys do not linger
    (again,), _ = relax([pre], PositionRelax(), EMT(), Executor(kind="serial"))
    assert "pre_relax_steps" not in again.info


def test_a_relaxation_with_its_own_calculator_labels_with_it():
    from pyiron_assyst.calculators import Morse

    atoms = _rattled_cu()
    (own,), report = relax([atoms], FullRelax(calculator=Morse()), EMT(),
                           Executor(kind="serial"))
    (direct,), _ = relax([atoms], FullRelax(), Morse(), Executor(kind="serial"))
    assert own.info["label_calculator"] == Morse().config_hash()
    assert own.get_potential_energy() == pytest.approx(direct.get_potential_energy(), abs=1e-9)
    assert report.force_calls == own.info["force_calls"] == direct.info["force_calls"]


def test_a_failed_pre_relaxation_is_recorded_and_the_relaxation_starts_from_the_input():
    atoms = bulk("Fe", "bcc", a=2.9) * (2, 1, 1)  # EMT has no Fe
    atoms.rattle(0.05, seed=3)
    stamp_root(atoms, "00000000-0000-4000-8000-0000000000f1")
    from pyiron_assyst.calculators import Morse

    (out,), report = relax([atoms], FullRelax(pre_relax=EMT()), Morse(), Executor(kind="serial"))
    (plain,), _ = relax([atoms], FullRelax(), Morse(), Executor(kind="serial"))
    assert out.info["pre_relax_failed"].startswith("calculator_error")
    assert "pre_relax_steps" not in out.info
    assert out.get_potential_energy() == plain.get_potential_energy()
    assert report.n_out == 1
    assert report.drops == ()


def test_toml_takes_a_pre_relaxation_and_a_relaxation_calculator(tmp_path):
    from pyiron_assyst.calculators import Morse
    from pyiron_assyst.cli import settings

    path = tmp_path / "less-dft.toml"
    path.write_text('[calculator]\ntype = "EMT"\n'
                    '[volume_relax]\ntype = "VolumeRelax"\ncalculator = { type = "Morse" }\n'
                    '[full_relax]\ntype = "FullRelax"\nmax_steps = 20\n'
                    'pre_relax = { type = "Morse", epsilon = 0.5 }\n')
    _, configs, _ = settings.load_settings(path)
    assert configs["volume_relax"] == VolumeRelax(calculator=Morse())
    assert configs["full_relax"] == FullRelax(max_steps=20, pre_relax=Morse(epsilon=0.5))
