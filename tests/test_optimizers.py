"""SafeLBFGS: ASE's LBFGS bit for bit until a pair of negative curvature, which it skips."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.optimize import LBFGS

from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.numerics.cell import cell_filter
from pyiron_assyst.numerics.optimizers import SafeLBFGS
from pyiron_assyst.stages.relax import FullRelax, relax


class DoubleWell(Calculator):
    """E = Σ (x⁴ − 2x²) over all coordinates (eV, Å): minima at ±1 Å, a maximum at 0."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x = self.atoms.positions
        self.results = {"energy": float(np.sum(x**4 - 2 * x**2)), "forces": 4 * x - 4 * x**3}


def _trajectory(optimizer_class: type, dof) -> tuple[list[bytes], bool, object]:
    """Positions before every step and after the last, whether it converged, the optimizer."""
    optimizer = optimizer_class(dof, logfile=None)
    seen: list[bytes] = []
    optimizer.attach(lambda: seen.append(dof.get_positions().tobytes()))
    converged = bool(optimizer.run(fmax=1e-4, steps=60))
    return seen, converged, optimizer


def _rattled_copper(strain: float) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.03, seed=3)
    atoms.set_cell(atoms.cell.array * (1 + strain), scale_atoms=True)
    atoms.calc = EMT()
    return atoms


@pytest.mark.parametrize("with_cell", [False, True])
def test_same_steps_as_ase_lbfgs_while_nothing_is_skipped(with_cell):
    """Near a minimum (positive curvature throughout) every step equals ASE's, bit for bit."""
    def make():
        atoms = _rattled_copper(0.01 if with_cell else 0.0)
        return cell_filter(atoms) if with_cell else atoms

    ase_steps, ase_converged, ase = _trajectory(LBFGS, make())
    steps, converged, ours = _trajectory(SafeLBFGS, make())
    assert ours.skipped == 0
    assert (converged, ours.nsteps) == (ase_converged, ase.nsteps)
    assert ase_converged
    assert ase.nsteps > 5
    assert steps == ase_steps


def test_skipping_negative_curvature_finds_the_minimum_ase_lbfgs_misses():
    """From near the top of a double well, ASE's LBFGS stores a concave pair, steps back and
    'converges' on the maximum (zero force); SafeLBFGS skips those pairs and reaches a minimum."""
    def run(cls):
        atoms = Atoms("H", positions=[[0.1, -0.05, 0.2]])
        atoms.calc = DoubleWell()
        optimizer = cls(atoms, logfile=None)
        return optimizer, bool(optimizer.run(fmax=1e-4, steps=200)), atoms

    _, converged, atoms = run(LBFGS)
    assert converged
    assert np.abs(atoms.positions).max() < 1e-4
    optimizer, converged, atoms = run(SafeLBFGS)
    assert converged
    assert optimizer.skipped > 0
    np.testing.assert_allclose(np.abs(atoms.positions), 1.0, atol=1e-4)
    assert np.sign(atoms.positions).tolist() == [[1.0, -1.0, 1.0]]
    assert atoms.get_potential_energy() == pytest.approx(-3.0, abs=1e-8)


def test_steps_never_move_a_row_further_than_maxstep():
    atoms = Atoms("H", positions=[[0.1, -0.05, 0.2]])
    atoms.calc = DoubleWell()
    optimizer = SafeLBFGS(atoms, maxstep=0.05)
    previous = [atoms.positions.copy()]

    def check() -> None:
        assert np.linalg.norm(atoms.positions - previous[0], axis=1).max() <= 0.05 + 1e-12
        previous[0] = atoms.positions.copy()

    optimizer.attach(check)
    assert optimizer.run(fmax=1e-4, steps=300)


def test_memory_keeps_the_latest_pairs_only():
    atoms = Atoms("H", positions=[[0.9, 1.2, 1.1]])
    atoms.calc = DoubleWell()
    optimizer = SafeLBFGS(atoms, memory=2)
    optimizer.run(fmax=1e-12, steps=8)
    assert optimizer.nsteps == 8
    assert len(optimizer._pairs) == 2


def test_attach_interval_and_zero_steps():
    atoms = _rattled_copper(0.0)
    optimizer = SafeLBFGS(atoms)
    calls: list[int] = []
    optimizer.attach(lambda: calls.append(optimizer.nsteps), interval=3)
    assert not optimizer.run(fmax=1e-6, steps=0)
    assert (optimizer.nsteps, calls) == (0, [0])
    optimizer.run(fmax=1e-12, steps=7)
    assert calls == [0, 0, 3, 6]


@pytest.mark.parametrize("kwargs", [{"maxstep": 0.0}, {"maxstep": 1.5}, {"memory": 0},
                                    {"alpha": -1.0}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SafeLBFGS(_rattled_copper(0.0), **kwargs)


def test_relaxations_default_to_it_and_converge_more_often_in_fewer_calls():
    """Sampled-like Cu cells, full relaxation to 1e-3 eV/Å in 100 steps: the default optimizer
    converges at least as often as ASE's LBFGS with fewer force calls in total."""
    from pyiron_assyst.calculators import EMT as EMTConfig
    from pyiron_assyst.stages.sample import Formulas, SampleConfig, sample

    crystals, _ = sample(Formulas(({"Cu": 2},)), SampleConfig(spacegroups=(1, 2, 3, 4, 5, 6),
                                                              seed=4), Executor(kind="serial"))
    assert FullRelax().optimizer == "SafeLBFGS"
    serial = Executor(kind="serial")
    safe, safe_report = relax(crystals, FullRelax(), EMTConfig(), serial)
    ase, ase_report = relax(crystals, FullRelax(optimizer="LBFGS"), EMTConfig(), serial)
    assert len(crystals) == 6
    n_safe = sum(bool(a.info["converged"]) for a in safe)
    n_ase = sum(bool(a.info["converged"]) for a in ase)
    assert (n_safe, n_ase) == (6, 5)  # EMT is deterministic: these counts are exact
    assert (safe_report.force_calls, ase_report.force_calls) == (217, 291)
