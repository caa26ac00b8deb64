"""Real DFT through the package: GPAW relaxes and labels sampled Al cells, serially, with its own
MPI, and under SLURM; isolated atoms; resume after SIGKILL; failed calculations repaired.

Fast settings throughout (plane waves 200 eV, k-point density 1.2 Å, Fermi-Dirac 0.2 eV): the
numbers are not converged physics, but they are GPAW's numbers, so every comparison is between
two real calculations. Without GPAW (the ``[dft]`` extra) the GPAW tests skip, except under CI
(``CI`` set), where they fail.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from pyiron_assyst.calculators.gpaw import Gpaw, GpawCalculator, GpawProcess
from pyiron_assyst.calculators.repair import FAILURE_KINDS, Repair, Repairing, RepairPolicy
from pyiron_assyst.calculators.structure_settings import kpoints_from_density
from pyiron_assyst.cli import settings
from pyiron_assyst.cli.plan import add_plan_command, run_plan
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.core.lineage import stamp_root
from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.execution.launch import launcher
from pyiron_assyst.stages.label import label
from pyiron_assyst.stages.relax import VolumeRelax, relax
from pyiron_assyst.stages.sample import Formulas, SampleConfig, sample
from tests.support.slurm import (
    REPO,
    slurm,  # noqa: F401  (session fixture)
)

SERIAL = Executor(kind="serial")
FAST = Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2)
RELAX = VolumeRelax(max_steps=20, force_tolerance=0.05)
MORE_SCF = Repair("more_scf_iterations", {"maxiter": 100}, kind="scf_not_converged")


@pytest.fixture
def gpaw(monkeypatch):
    """GPAW importable (skip without it, fail under CI); Open MPI allowed to run as root."""
    try:
        import gpaw as module
    except ImportError as error:
        if os.environ.get("CI"):
            pytest.fail(f"GPAW is required under CI (pip install '.[dft]'): {error}")
        pytest.skip(f"GPAW not installed (pip install '.[dft]'): {error}")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return module


def sampled() -> list[Atoms]:
    """Three sampled Al cells (1 and 2 atoms; space groups 191, 221, 191)."""
    crystals, _ = sample(Formulas.range("Al", 1, 3),
                         SampleConfig(seed=1, spacegroups=(191, 221), max_atoms=2))
    return crystals[:3]


def bulk_al() -> Atoms:
    atoms = bulk("Al", "fcc", a=4.04)
    stamp_root(atoms, "bulk-al")
    return atoms


def direct(config: Gpaw, atoms: Atoms, settings_of: Atoms | None = None) -> dict:
    """GPAW on ``atoms`` without any stage, with the settings derived for ``settings_of``
    (default ``atoms``): the reference numbers."""
    prepared = config.prepare(atoms)
    calc = GpawCalculator(config.gpaw_parameters(settings_of or prepared))
    calc.calculate(prepared, ["energy"])
    return calc.results


# ------------------------------------------------------------------ no GPAW needed


def test_gpaw_config_is_validated_frozen_and_round_trips():
    policy = RepairPolicy((MORE_SCF,), max_attempts=2)
    config = Gpaw(ecut=300, magmoms={"Fe": 2.5}, mixer_beta=0.05, repair=policy)
    assert config_from_json(config.to_json()) == config
    assert hash(config) == hash(config_from_json(config.to_json()))
    assert config.magmoms == (("Fe", 2.5),)
    assert config.ecut == 300.0
    assert '"@config": "Gpaw"' in config.to_json()
    assert '"RepairPolicy"' in config.to_json()
    for field, value, allowed in [("ecut", -1, "cutoff > 0 eV"), ("smearing", 0, "width > 0"),
                                  ("occupations", "gauss", "one of"), ("maxiter", 0, ">= 1"),
                                  ("mixer_beta", 1.5, "(0, 1]"), ("magmoms", {"Xx": 1}, "symbols")]:
        with pytest.raises(ConfigError, match=rf"Gpaw\.{field} must be .*{allowed}".replace(
                "(", r"\(").replace(")", r"\)")):
            Gpaw(**{field: value})
    # a rule that changes a setting the config does not have fails when the config is built
    with pytest.raises(ConfigError, match=r"Gpaw\.repair must be rules .* changes \['ismear'\]"):
        Gpaw(repair=RepairPolicy((Repair("smear", {"ismear": 0}),)))
    # the policy is part of the hash, so of every cache key and label record
    assert Gpaw().config_hash() != Gpaw(repair=policy).config_hash()
    assert Gpaw(repair=policy).config_hash() != Gpaw(
        repair=RepairPolicy((MORE_SCF,), max_attempts=3)).config_hash()


def test_elements_without_a_paw_setup_are_refused_before_any_work(tmp_path, monkeypatch):
    for name in ("Al.MYXC.gz", "Cu.11.MYXC", "Zz.MYXC.gz", "Fe.dzp.basis.gz", "Ni.PBE.gz"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv("GPAW_SETUP_PATH", str(tmp_path))
    assert Gpaw(xc="MYXC").supported_elements() == {"Al", "Cu"}
    Gpaw(xc="MYXC").check_elements({"Al", "Cu"})
    with pytest.raises(ConfigError, match="Gpaw cannot compute Fe, Ni: it knows Al, Cu"):
        Gpaw(xc="MYXC").check_elements({"Al", "Fe", "Ni"})
    assert Gpaw(xc="NOSETUPS").supported_elements() is None  # unknown: GPAW may generate


def test_the_installed_setups_are_found(gpaw, monkeypatch):
    monkeypatch.delenv("GPAW_SETUP_PATH", raising=False)
    known = Gpaw().supported_elements()
    assert {"H", "Al", "Cu", "Fe", "Au"} <= known
    assert "Og" not in known  # oganesson has no PAW setup in gpaw-data
    from gpaw import setup_paths

    assert all(any(p.name.startswith(f"{el}.") for d in setup_paths
                   for p in Path(d).iterdir()) for el in known)


def test_repair_rules_are_validated_and_matched_in_order():
    with pytest.raises(ConfigError, match=r"Repair\.kind must be 'any' or one of"):
        Repair("x", {"a": 1}, kind="segfault")
    with pytest.raises(ConfigError, match=r"Repair\.match must be a regular expression"):
        Repair("x", {"a": 1}, match="(")
    with pytest.raises(ConfigError, match=r"Repair\.changes must be at least one setting"):
        Repair("x", {})
    with pytest.raises(ConfigError, match=r"RepairPolicy\.rules must be rules with distinct"):
        RepairPolicy((MORE_SCF, MORE_SCF))
    with pytest.raises(ConfigError, match=r"RepairPolicy\.max_attempts must be an int >= 1"):
        RepairPolicy((), max_attempts=0)
    zbrent = Repair("zbrent", {"ibrion": 1}, kind="any", match=r"ZBRENT: fatal error")
    policy = RepairPolicy((MORE_SCF, zbrent), log_files=("vasp.out",))
    assert policy.next_rule("scf_not_converged", "", ()) is MORE_SCF
    assert policy.next_rule("scf_not_converged", "", ("more_scf_iterations",)) is None
    assert policy.next_rule("crashed", "... ZBRENT: fatal error in bracketing", ()) is zbrent
    assert policy.next_rule("crashed", "EDDDAV", ()) is None
    assert set(FAILURE_KINDS) >= {"scf_not_converged", "crashed", "timeout", "non_finite"}


def test_gpaw_records_its_settings_and_treats_isolated_atoms_spin_polarised():
    cell = bulk("Al", "hcp", a=2.9, c=4.7)
    prepared = FAST.prepare(cell)
    mesh = kpoints_from_density(cell.cell.array, 1.2, cell.pbc)
    # by hand: c: 2π·1.2/4.7 = 1.60 -> 2; a: 2π·1.2·2/(√3·2.9) = 3.0007 -> 4
    assert prepared.info["kpoint_mesh"] == " ".join(map(str, mesh)) == "4 4 2"
    assert prepared.info["kpoint_density"] == 1.2
    assert prepared.info["spin_polarized"] is False
    params = FAST.gpaw_parameters(prepared)
    assert params["kpts"] == [4, 4, 2]
    assert params["mode"] == {"name": "pw", "ecut": 200.0}
    assert params["occupations"] == {"name": "fermi-dirac", "width": 0.2}
    assert params["spinpol"] is False
    assert "symmetry" not in params
    assert "mixer" not in params
    atom = Atoms("Al", cell=np.eye(3) * 8.5, pbc=True)
    prepared = FAST.prepare(atom)
    assert prepared.info["kpoint_mesh"] == "1 1 1"
    assert prepared.info["spin_polarized"] is True
    assert prepared.get_initial_magnetic_moments().tolist() == [1.0]  # ASE's free-atom moment
    assert FAST.gpaw_parameters(prepared)["spinpol"] is True
    changed = Gpaw(symmetry=False, mixer_beta=0.05).gpaw_parameters(cell)
    assert changed["symmetry"] == "off"
    assert changed["mixer"]["beta"] == 0.05


def test_with_parameters_changes_the_right_settings():
    from pyiron_assyst.calculators import AseCalculator
    from pyiron_assyst.calculators.structure_settings import StructureSettings

    assert FAST.with_parameters({"maxiter": 7}).maxiter == 7
    vasp = StructureSettings(AseCalculator("ase.calculators.emt:EMT"), kpoint_density=3.0)
    wrapped = Repairing(vasp, RepairPolicy((Repair("a", {"asap_cutoff": True}),)))
    changed = wrapped.with_parameters({"asap_cutoff": True})
    assert changed.base.base.kwargs == (("asap_cutoff", True),)
    assert changed.policy == wrapped.policy
    assert changed.repair_policy() is wrapped.policy


def test_the_gpaw_example_loads_and_plans_as_the_docs_say(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    example = "examples/al_gpaw.toml"
    _, configs, _ = settings.load_settings(example)
    dft = configs["calculator"]
    assert isinstance(dft, Gpaw)
    assert (dft.ecut, dft.kpoint_density, dft.maxiter, dft.launch) == (250.0, 1.5, 60, "")
    assert [rule.name for rule in dft.repair.rules] == ["gentle_mixing", "no_symmetry"]
    assert "reference" not in configs  # labels by the calculator: relaxed ones keep theirs
    argv = ["plan", example, "--cost-per-calculation", "0.0006"]
    shown = (REPO / "docs" / "hpc.md").read_text().split(
        f"$ pyiron-assyst {' '.join(argv)}\n")[1].split("```")[0]
    parser = argparse.ArgumentParser(prog="pyiron-assyst")
    add_plan_command(parser.add_subparsers(dest="command"))
    assert run_plan(parser.parse_args(argv)) == 0
    assert capsys.readouterr().out == shown


UNCONVERGED = ("printf '%s' '{\"error\": \"KohnShamConvergenceError\", "
               "\"message\": \"Did not converge!\"}' > output.json; exit 1;")
"""A launcher prefix that does what GPAW's worker does when the SCF fails, without GPAW."""


@pytest.mark.parametrize(("launch", "kind", "text", "history"), [
    ("kill -9 $$;", "crashed", "(killed by signal 9) wrote no output.json", "crashed"),
    (UNCONVERGED, "scf_not_converged", "(exit 1): KohnShamConvergenceError: Did not converge!",
     "scf_not_converged -> more_scf_iterations; scf_not_converged"),
])
def test_a_failed_gpaw_program_is_classified_and_repaired_by_kind(launch, kind, text, history,
                                                                    tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where GpawProcess makes its directories
    config = Gpaw(ecut=200.0, launch=launch, repair=RepairPolicy((MORE_SCF,), max_attempts=2))
    out, report = label([bulk_al()], config, SERIAL)
    assert not out
    (drop,) = report.drops
    assert drop.reason == kind
    assert f"GPAW under {launch!r} {text}" in drop.detail
    assert drop.detail.endswith(f"[attempts: {history}]")
    assert list(tmp_path.iterdir()) == []  # no directory left behind


# ------------------------------------------------------------------ real GPAW


@pytest.mark.slow
def test_relax_and_label_sampled_cells_serially(gpaw):
    crystals = sampled()
    relaxed, report = relax(crystals, RELAX, FAST, SERIAL)
    assert report.n_out == 3
    assert not report.drops
    assert not report.flagged
    assert report.force_calls == sum(a.info["force_calls"] for a in relaxed) >= 9
    for start, final in zip(crystals, relaxed):
        assert final.info["converged"]
        assert final.info["label_calculator"] == FAST.config_hash()
        # the volume relaxation reached its tolerance on the cell force |p| V (eV)
        pressure = -final.get_stress()[:3].mean()
        assert abs(pressure) * final.get_volume() < 0.05 * 3
        assert final.get_volume() != pytest.approx(start.get_volume(), rel=1e-3)
        # its single point is GPAW's for that very cell, with the mesh of the start (recorded)
        reference = direct(FAST, final, settings_of=start)
        assert final.get_potential_energy() == pytest.approx(reference["energy"], abs=2e-3)
        assert final.info["kpoint_mesh"] == " ".join(
            map(str, kpoints_from_density(start.cell.array, 1.2, start.pbc)))
    labelled, label_report = label(crystals, FAST, SERIAL)
    assert label_report.n_out == 3
    assert label_report.force_calls == 3
    for start, result in zip(crystals, labelled):
        reference = direct(FAST, start)
        results = result.calc.results
        assert results["energy"] == pytest.approx(reference["energy"], abs=1e-8)
        np.testing.assert_allclose(results["forces"], reference["forces"], atol=1e-8)
        np.testing.assert_allclose(results["stress"], reference["stress"], atol=1e-8)
        # smeared DFT: the force-consistent free energy is not the energy
        assert results["free_energy"] == pytest.approx(reference["free_energy"], abs=1e-8)
        assert abs(results["free_energy"] - results["energy"]) > 1e-4
    # the relaxed cells keep their relaxation's single point: labelling them costs nothing
    again, again_report = label(relaxed, FAST, SERIAL)
    assert again_report.force_calls == 0
    assert all(a is b for a, b in zip(again, relaxed))


@pytest.mark.slow
def test_isolated_atom_reference_energies(gpaw):
    atom = Atoms("Al", cell=np.eye(3) * 8.5, pbc=True)
    stamp_root(atom, "al-atom")
    (spin,), report = label([atom], FAST, SERIAL)
    (flat,), _ = label([atom], Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2,
                                    isolated_spin_polarized=False), SERIAL)
    (solid,), _ = label([bulk_al()], FAST, SERIAL)
    assert not report.drops
    assert spin.info["kpoint_mesh"] == "1 1 1"
    assert spin.info["spin_polarized"] is True
    assert flat.info["spin_polarized"] is False
    # Hund's rule: the spin-polarised free atom is lower than the unpolarised one
    assert spin.get_potential_energy() < flat.get_potential_energy() - 0.05
    # cohesive energy of fcc Al (PBE, converged: 3.4 eV) within the fast settings' error
    cohesive = spin.get_potential_energy() - solid.get_potential_energy()
    assert 2.8 < cohesive < 4.0, cohesive


@pytest.mark.slow
def test_gpaw_runs_on_two_mpi_ranks_with_the_serial_numbers(gpaw, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # each evaluation's files go below the working directory
    cell = sampled()[1]
    mpi = Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2,
               launch=launcher(Executor(kind="process", cores=2), starter="mpiexec"))
    assert mpi.launch == "mpiexec -n 2"
    prepared = mpi.prepare(cell)
    calc = mpi.calculator_for(prepared)
    assert isinstance(calc, GpawProcess)
    calc.calculate(prepared, ["energy"])
    assert calc.ranks == 2
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone
    reference = direct(FAST, cell)
    assert calc.results["energy"] == pytest.approx(reference["energy"], abs=1e-6)
    np.testing.assert_allclose(calc.results["forces"], reference["forces"], atol=1e-5)
    np.testing.assert_allclose(calc.results["stress"], reference["stress"], atol=1e-6)


@pytest.mark.slow
def test_an_scf_failure_on_two_mpi_ranks_is_repaired(gpaw, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cell = sampled()[1]
    mpi = Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2, maxiter=3, launch="mpiexec -n 2",
               repair=RepairPolicy((MORE_SCF,), max_attempts=2))
    (repaired,), report = label([cell], mpi, SERIAL)
    assert repaired.info["repairs"] == "scf_not_converged -> more_scf_iterations"
    assert repaired.info["calculation_attempts"] == 2
    assert report.force_calls == 2
    reference = direct(Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2, maxiter=100), cell)
    assert repaired.get_potential_energy() == pytest.approx(reference["energy"], abs=1e-6)


@pytest.mark.slow
def test_scf_failures_are_repaired_in_order_and_recorded(gpaw, tmp_path):
    crystals = sampled()[1:2]
    tight = Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2, maxiter=3)
    cache = ResultCache(tmp_path / "cache")
    failed, report = label(crystals, tight, SERIAL, cache=cache)
    assert not failed
    assert report.drops[0].reason == "scf_not_converged"
    assert "KohnShamConvergenceError" in report.drops[0].detail
    # two rules, in order; their changes accumulate; the first alone is not enough
    five = Repair("five_iterations", {"maxiter": 5}, kind="scf_not_converged")
    policy = RepairPolicy((five, MORE_SCF), max_attempts=3)
    repaired_config = Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2, maxiter=3,
                           repair=policy)
    # a policy is part of the cache key: the stored failure does not answer the new config
    (repaired,), report = label(crystals, repaired_config, SERIAL, cache=cache)
    history = "scf_not_converged -> five_iterations; scf_not_converged -> more_scf_iterations"
    assert repaired.info["repairs"] == history
    assert repaired.info["calculation_attempts"] == 3
    assert [(f.reason, f.detail) for f in report.flagged] == [("repaired", history)]
    reference = direct(Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2, maxiter=100),
                       crystals[0])
    assert repaired.get_potential_energy() == pytest.approx(reference["energy"], abs=1e-8)
    # too few attempts: the structure stays failed, with every attempt in the drop
    short = Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2, maxiter=3,
                 repair=RepairPolicy((five, MORE_SCF), max_attempts=2))
    out, report = label(crystals, short, SERIAL)
    assert not out
    assert report.drops[0].reason == "scf_not_converged"
    assert report.drops[0].detail.endswith(
        "[attempts: scf_not_converged -> five_iterations; scf_not_converged]")


@pytest.mark.slow
def test_a_failure_the_policy_does_not_know_is_recorded_not_retried(gpaw):
    policy = RepairPolicy((MORE_SCF,), max_attempts=3)
    broken = Gpaw(ecut=200.0, kpoint_density=1.2, xc="NO_SUCH_FUNCTIONAL", repair=policy)
    out, report = label([bulk_al()], broken, SERIAL)
    assert not out
    assert report.force_calls == 1
    (drop,) = report.drops
    assert drop.reason == "calculator_error"
    assert "NO_SUCH_FUNCTIONAL" in drop.detail
    assert drop.detail.endswith(
        "[attempts: calculator_error]")


CHILD = """
import sys
from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.label import label
from tests.test_gpaw import FAST, sampled
if __name__ == "__main__":
    label(sampled(), FAST, Executor(kind="serial"), cache=ResultCache(sys.argv[1]))
"""


@pytest.mark.slow
def test_a_killed_gpaw_run_resumes_with_zero_recomputation(gpaw, tmp_path, monkeypatch):
    cache = ResultCache(tmp_path / "cache")
    namespace = cache.namespace("label")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO),
                                                         os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", CHILD, str(cache.directory)], env=env,
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while len(namespace.listing()[0]) < 1 and process.poll() is None:
            assert time.monotonic() < deadline, "no GPAW single point finished in 300 s"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    done = len(namespace.listing()[0])
    assert 1 <= done < 3
    calls = []
    original = GpawCalculator.calculate

    def counting(self, *args, **kwargs):
        calls.append(self.atoms)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GpawCalculator, "calculate", counting)
    resumed, report = label(sampled(), FAST, SERIAL, cache=cache)
    assert len(calls) == 3 - done
    assert report.n_out == 3
    calls.clear()
    again, _ = label(sampled(), FAST, SERIAL, cache=cache)
    assert calls == []  # a finished run: nothing at all is computed again
    for a, b in zip(resumed, again):
        assert a.get_potential_energy() == b.get_potential_energy()
        assert a.info["uuid"] == b.info["uuid"]


# ------------------------------------------------------------------ under SLURM


def slurm_vs_serial(tmp_path: Path) -> dict:
    """Relax and label two cells on SLURM, each calculation on 2 MPI ranks (mpiexec in the
    job), and serially in this process."""
    executor = Executor(kind="slurm_cluster", cores=2, cache_directory=str(tmp_path / "jobs"))
    mpi = Gpaw(ecut=200.0, kpoint_density=1.2, smearing=0.2,
               launch=launcher(executor, starter="mpiexec"))
    assert mpi.launch == "mpiexec -n 2"  # Open MPI refuses 2 ranks in a job without 2 slots
    crystals = sampled()[:2]
    on_slurm, slurm_report = relax(crystals, RELAX, mpi, executor)
    serial, _ = relax(crystals, RELAX, FAST, SERIAL)
    slurm_labels, _ = label(crystals, mpi, executor)
    serial_labels, _ = label(crystals, FAST, SERIAL)
    return {"relaxed": (on_slurm, serial), "labels": (slurm_labels, serial_labels),
            "report": slurm_report}


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_gpaw_under_slurm_with_two_ranks_equals_the_serial_result(gpaw, tmp_path):
    result = slurm_vs_serial(tmp_path)
    on_slurm, serial = result["relaxed"]
    assert result["report"].n_out == 2
    assert not result["report"].drops
    # relaxation: each MPI evaluation starts its SCF afresh, the serial one reuses wave
    # functions, so the two agree to GPAW's SCF tolerance, not bit for bit (measured: 1.3e-6 eV)
    for a, b in zip(on_slurm, serial):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-4)
        np.testing.assert_allclose(a.cell.array, b.cell.array, atol=1e-3)
        assert a.info["kpoint_mesh"] == b.info["kpoint_mesh"]
    # single points from the same start: the same numbers to 1e-6 eV
    for a, b in zip(*result["labels"]):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-5)
