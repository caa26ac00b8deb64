"""Repair of failed calculations with a cheap calculator: EMT that returns NaN forces on purpose.

The GPAW tests (``tests/test_gpaw.py``) repair real SCF failures; these run in a second and
check the bookkeeping exactly: the relax stage retries a structure whose relaxation failed
midway, from its start, with the rule's setting, in a worker process; the result equals a
relaxation that never failed; the failed attempt's force calls are counted; the history is on
the structure and in the report.
"""

from __future__ import annotations

import pytest
from ase.build import bulk

from pyiron_assyst.calculators import AseCalculator
from pyiron_assyst.calculators.repair import Repair, Repairing, RepairPolicy, failure_kind
from pyiron_assyst.core.config import config_from_json
from pyiron_assyst.core.lineage import stamp_root
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.relax import VolumeRelax, relax

RELAX = VolumeRelax(max_steps=50, force_tolerance=1e-3)
NAN_AFTER = 2
FAULTY = AseCalculator("tests.support.faulty_calculators:FaultyEMT",
                       {"nan_natoms": 2, "nan_after": NAN_AFTER})
PLAIN = AseCalculator("tests.support.faulty_calculators:FaultyEMT")
POLICY = RepairPolicy((Repair("plain_emt", {"nan_natoms": -1}, kind="non_finite"),))


def cells():
    fcc = bulk("Cu", "fcc", a=3.7)
    hcp = bulk("Cu", "hcp", a=2.7, c=4.3)
    hcp.positions[1] += (0.05, -0.03, 0.02)
    for i, atoms in enumerate((fcc, hcp)):
        stamp_root(atoms, f"cell-{i}")
    return [fcc, hcp]


def test_relax_repairs_a_failure_midway_and_counts_every_attempt():
    repaired_config = Repairing(FAULTY, POLICY)
    assert config_from_json(repaired_config.to_json()) == repaired_config
    out, report = relax(cells(), RELAX, repaired_config,
                        Executor(kind="process", max_workers=2, chunk_size=1))
    reference, _ = relax(cells(), RELAX, PLAIN, Executor(kind="serial"))
    assert report.n_out == 2
    assert not report.drops
    one, two = out
    assert "repairs" not in one.info  # the one-atom cell never failed
    assert two.info["repairs"] == "non_finite -> plain_emt"
    assert two.info["calculation_attempts"] == 2
    assert [(f.uuid, f.reason, f.detail) for f in report.flagged] == [
        (two.info["uuid"], "repaired", "non_finite -> plain_emt")]
    # the repaired relaxation is the one that never failed, plus the failed attempt's calls
    for a, b in zip(out, reference):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-12)
    assert two.info["force_calls"] == reference[1].info["force_calls"] + NAN_AFTER + 1
    assert report.force_calls == sum(a.info["force_calls"] for a in out)


def test_without_a_matching_rule_the_failure_is_dropped_with_its_kind():
    out, report = relax(cells(), RELAX, FAULTY, Executor(kind="serial"))
    assert [d.reason for d in report.drops] == ["non_finite"]
    assert "[attempts" not in report.drops[0].detail  # no policy, no attempt history
    other = Repairing(FAULTY, RepairPolicy((Repair("x", {"nan_after": 5}, kind="crashed"),)))
    out, report = relax(cells(), RELAX, other, Executor(kind="serial"))
    assert len(out) == 1
    assert report.drops[0].reason == "non_finite"
    assert report.drops[0].detail.endswith("[attempts: non_finite]")


def test_failure_kinds():
    import subprocess

    from ase.calculators.calculator import CalculationFailed, SCFError

    from pyiron_assyst.calculators.evaluation import NonFiniteError

    assert failure_kind(SCFError("x")) == "scf_not_converged"
    assert failure_kind(CalculationFailed("x")) == "crashed"
    assert failure_kind(subprocess.CalledProcessError(1, "vasp")) == "crashed"
    assert failure_kind(subprocess.TimeoutExpired("vasp", 1)) == "timeout"
    assert failure_kind(NonFiniteError("x")) == "non_finite"
    assert failure_kind(ValueError("x")) == "calculator_error"
