"""The physics of the transferability report, on EMT (exact, cheap): ground states, elastic
constants, slabs and surfaces, alloy formation energies, per-composition held-out windows, and
a binary report.

Independent values: the elastic constants against the derivative of EMT's analytic stress, the
bulk modulus against the EOS fit, the surface energies against ASE's own fcc(111)/(100)
builders, and the Cu–Ag formation energies against the numbers measured independently in
issue 19 (L1₂ Cu₃Ag 21, L1₂ CuAg₃ 26, B2 CuAg 31 meV/atom against fcc Cu and Ag).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk as ase_bulk
from ase.calculators.singlepoint import SinglePointCalculator

from pyiron_assyst.calculators import EMT, LennardJones
from pyiron_assyst.fitting import alloys
from pyiron_assyst.fitting import bulk as B
from pyiron_assyst.fitting.transferability import (
    TransferabilityConfig,
    TransferabilityResult,
    _calculator_source,
    _errors,
    md_cell,
    transferability,
    write_report,
)

EMT_SOURCE = _calculator_source(EMT())
FAST = TransferabilityConfig(n_volumes=5, vacancy_sites=32, relax_steps=20, slab_layers=3,
                             md_steps=10, md_snapshots=2, cluster_fractions=(0.7, 1.0),
                             stability_runs=(("vacancy", 1500.0, 0.02),
                                             ("surface", 1500.0, 0.02)))


@pytest.fixture(scope="module")
def cu_phases() -> dict[str, B.Phase]:
    phases = {p: B.equilibrium("Cu", p, EMT_SOURCE) for p in ("fcc", "bcc", "sc")}
    phases["hcp"] = B.relaxed_c_over_a("Cu", EMT_SOURCE)
    return phases


def test_emt_cu_ground_state_is_hcp_by_one_mev_and_ag_is_fcc(cu_phases):
    assert B.ground_state(cu_phases).name == "hcp"
    assert 1000 * (cu_phases["fcc"].energy - cu_phases["hcp"].energy) == pytest.approx(0.94,
                                                                                         abs=0.1)
    assert cu_phases["hcp"].c_over_a == pytest.approx(1.6322, abs=5e-4)  # ideal 1.63299
    assert cu_phases["fcc"].a == pytest.approx(3.5898, abs=1e-3)
    ag = {p: B.equilibrium("Ag", p, EMT_SOURCE) for p in ("fcc", "bcc", "sc")}
    ag["hcp"] = B.relaxed_c_over_a("Ag", EMT_SOURCE)
    assert B.ground_state(ag).name == "fcc"
    with pytest.raises(ValueError, match="EOS fits all failed"):
        B.ground_state({"fcc": B.Phase("fcc", math.nan, math.nan, math.nan)})


def _stress_derivative(atoms: Atoms, kind: str, index: int, step: float = 1e-4) -> float:
    values = []
    for e in (step, -step):
        strained = B._strained(atoms, kind, e)
        strained.calc = EMT_SOURCE(strained)
        values.append(strained.get_stress(voigt=True)[index])
    return (values[0] - values[1]) / (2 * step) / units.GPa


def test_elastic_constants_equal_the_derivative_of_the_stress(cu_phases):
    fcc = cu_phases["fcc"]
    constants = B.elastic_constants("Cu", fcc, EMT_SOURCE)
    atoms = B.phase_structure("Cu", "fcc", fcc.volume)
    assert set(constants) == {"C11", "C12", "C44"}
    assert constants["C11"] == pytest.approx(_stress_derivative(atoms, "xx", 0), abs=0.5)
    assert constants["C12"] == pytest.approx(_stress_derivative(atoms, "xx", 1), abs=0.5)
    assert constants["C44"] == pytest.approx(_stress_derivative(atoms, "yz", 3), abs=0.5)
    assert constants["C11"] > constants["C12"] > 0
    assert constants["C44"] > 0
    voigt = (constants["C11"] + 2 * constants["C12"]) / 3
    assert voigt == pytest.approx(fcc.bulk_modulus, rel=0.01)


def test_hcp_elastic_constants_relax_positions_and_give_the_bulk_modulus(cu_phases):
    hcp = cu_phases["hcp"]
    c = B.elastic_constants("Cu", hcp, EMT_SOURCE)
    assert set(c) == {"C11", "C12", "C13", "C33", "C44"}
    voigt = (2 * c["C11"] + c["C33"] + 2 * c["C12"] + 4 * c["C13"]) / 9
    assert voigt == pytest.approx(hcp.bulk_modulus, rel=0.01)
    assert c["C33"] > c["C11"]  # EMT Cu hcp: 254 against 217 GPa


def test_slabs_give_the_surface_energies_of_ases_fcc_builders(cu_phases):
    from ase.build import fcc100, fcc111

    from pyiron_assyst.fitting.transferability import _surface

    fcc = cu_phases["fcc"]
    e_bulk = B.energy(B.phase_structure("Cu", "fcc", fcc.volume), EMT_SOURCE)
    for facet, build in (("111", fcc111), ("100", fcc100)):
        own = _surface(TransferabilityConfig(), "Cu", fcc, facet, EMT_SOURCE)
        slab = build("Cu", size=(1, 1, 8), a=fcc.a, vacuum=5.0, periodic=True)
        area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
        expected = (B.energy(slab, EMT_SOURCE) - len(slab) * e_bulk) / (2 * area)
        assert own == pytest.approx(expected / (units.J / units.m**2), abs=0.005), facet
    with pytest.raises(Exception, match="facet"):
        B.slab("Cu", fcc, "0001", 3, 10.0)


@pytest.mark.parametrize("phase", ["fcc", "bcc", "hcp", "sc"])
def test_md_cells_are_built_on_the_phase(cu_phases, phase):
    structure = cu_phases[phase]
    nearest = B.nearest_neighbour("Cu", structure)
    name, vacancy = md_cell(TransferabilityConfig(), "Cu", structure, "vacancy")
    assert name == "vacancy"
    assert 31 <= len(vacancy) < 70
    assert np.isclose(vacancy.get_volume() / (len(vacancy) + 1), structure.volume)
    name, slab = md_cell(TransferabilityConfig(), "Cu", structure, "surface")
    assert name == f"surface ({B.FACETS[phase][0]})"
    assert len(slab) >= 32
    heights = np.sort(slab.positions[:, 2])
    assert slab.cell[2, 2] - (heights[-1] - heights[0]) == pytest.approx(10.0, abs=1e-6)
    distances = slab.get_all_distances(mic=True)[np.triu_indices(len(slab), 1)]
    assert distances.min() == pytest.approx(nearest, rel=1e-6)


def test_compounds_have_their_composition_and_neighbours():
    built = alloys.compounds("Cu", "Ag")
    assert list(built) == ["L12 Cu3Ag", "L12 CuAg3", "B2 CuAg", "L10 CuAg",
                           "random fcc Cu50Ag50"]
    counts = {n: sorted(a.get_chemical_symbols().count(s) for s in ("Cu", "Ag"))
              for n, a in built.items()}
    assert counts == {"L12 Cu3Ag": [1, 3], "L12 CuAg3": [1, 3], "B2 CuAg": [1, 1],
                      "L10 CuAg": [2, 2], "random fcc Cu50Ag50": [16, 16]}
    b2 = built["B2 CuAg"].repeat(2)
    d = b2.get_all_distances(mic=True)
    first = np.isclose(d[0], d[0][d[0] > 0].min())
    assert first.sum() == 8
    assert {b2[i].symbol for i in np.flatnonzero(first)} == {"Ag"}
    l12 = built["L12 Cu3Ag"]
    ag = [i for i, s in enumerate(l12.get_chemical_symbols()) if s == "Ag"][0]
    big = l12.repeat(2)
    d = big.get_all_distances(mic=True)[ag]
    shell = np.isclose(d, d[d > 0].min())
    assert shell.sum() == 12
    assert {big[i].symbol for i in np.flatnonzero(shell)} == {"Cu"}
    again = alloys.compounds("Cu", "Ag", seed=0)["random fcc Cu50Ag50"]
    other = alloys.compounds("Cu", "Ag", seed=1)["random fcc Cu50Ag50"]
    assert again.get_chemical_symbols() == built["random fcc Cu50Ag50"].get_chemical_symbols()
    assert other.get_chemical_symbols() != again.get_chemical_symbols()


def test_emt_cu_ag_formation_energies_are_the_independently_measured_ones(cu_phases):
    ag = B.equilibrium("Ag", "fcc", EMT_SOURCE)
    built = alloys.compounds("Cu", "Ag")
    against_fcc = {"Cu": cu_phases["fcc"], "Ag": ag}
    measured = {"L12 Cu3Ag": 21.0, "L12 CuAg3": 26.0, "B2 CuAg": 31.0}  # issue 19
    for name, value in measured.items():
        formation, v0 = alloys.formation_energy(built[name], against_fcc, EMT_SOURCE)
        assert 1000 * formation == pytest.approx(value, abs=1.0), name
        assert 0.95 < v0 / alloys.vegard_volume(built[name], against_fcc) < 1.05
    # against Cu's hcp ground state, x_Cu * 0.94 meV/atom higher
    against_hcp = {"Cu": cu_phases["hcp"], "Ag": ag}
    shift = (alloys.formation_energy(built["B2 CuAg"], against_hcp, EMT_SOURCE)[0]
             - alloys.formation_energy(built["B2 CuAg"], against_fcc, EMT_SOURCE)[0])
    assert 1000 * shift == pytest.approx(0.5 * 0.94, abs=0.05)


def _labelled(symbols: str, energy_per_atom: float, shift: float) -> Atoms:
    atoms = ase_bulk(symbols[:2], "fcc", a=3.6 + shift)
    atoms.calc = SinglePointCalculator(atoms, energy=energy_per_atom * len(atoms),
                                       free_energy=energy_per_atom * len(atoms),
                                       forces=np.zeros((len(atoms), 3)))
    return atoms


def test_held_out_window_is_per_composition():
    """DFT-like totals: Cu near -3.7 eV/atom, Ag near -2.8: a window on the lowest energy of
    all would drop every Ag structure; per composition it keeps both minima."""
    structures = [_labelled("Cu", -3.7, 0.0), _labelled("Cu", -3.2, 0.1),
                  _labelled("Cu", -1.5, 0.5), _labelled("Ag", -2.8, 0.0),
                  _labelled("Ag", -2.3, 0.2)]
    result = TransferabilityResult()
    _errors("held-out", structures, EMT_SOURCE, EMT_SOURCE, result, window=1.0)
    assert result.value("held-out: structures").model == 5
    assert result.value("held-out within 1 eV/atom: structures").model == 4
    assert result.value("held-out Cu within 1 eV/atom: structures").model == 2
    assert result.value("held-out Ag within 1 eV/atom: structures").model == 2
    one = TransferabilityResult()
    _errors("held-out", structures[:3], EMT_SOURCE, EMT_SOURCE, one, window=1.0)
    assert not any(" Cu within" in r.quantity for r in one.rows)  # one composition: no split


def test_binary_report_of_emt_against_itself(tmp_path):
    config = TransferabilityConfig(elements=("Cu", "Ag"), n_volumes=5, vacancy_sites=32,
                                   relax_steps=20, slab_layers=3, md_steps=10, md_snapshots=2,
                                   stability_runs=(("vacancy", 1500.0, 0.02),),
                                   cluster_fractions=(0.7, 1.0))
    result = transferability(EMT(), EMT(), (), config)
    assert result.ground_states == {"Cu": "hcp", "Ag": "fcc"}
    table = result.table()
    assert table["difference"].abs().max() == 0.0
    assert result.value("Ag fcc a").reference == pytest.approx(4.06, abs=0.01)
    assert result.value("Ag E(hcp) - E(fcc)").reference > 0
    assert result.value("formation energy B2 CuAg").reference == pytest.approx(31.5, abs=1.0)
    assert list(result.formation) == ["L12 Cu3Ag", "L12 CuAg3", "B2 CuAg", "L10 CuAg",
                                      "random fcc Cu50Ag50"]
    assert [c.name for c in result.checks if not c.name.startswith("formation")] == [
        "MD Cu vacancy 1500 K: shortest distance", "MD Cu vacancy 1500 K: |E_model - E_ref|",
        "MD Ag vacancy 1500 K: shortest distance", "MD Ag vacancy 1500 K: |E_model - E_ref|",
        "dimer Cu-Cu curve: |E_model - E_ref| 1.78-2.54 Å",
        "dimer Cu-Ag curve: |E_model - E_ref| 1.89-2.71 Å",  # 0.7-1.0 x the mean of 2.54, 2.87
        "dimer Ag-Ag curve: |E_model - E_ref| 2.01-2.87 Å",
        "trimer Cu-Cu-Cu curve: |E_model - E_ref| 1.78-2.54 Å",
        "trimer Ag-Ag-Ag curve: |E_model - E_ref| 2.01-2.87 Å"]
    assert result.passed
    paths = write_report(result, tmp_path)
    assert (tmp_path / "formation_energies.png") in paths


def test_a_model_wrong_on_alloys_fails_their_checks_in_red(tmp_path):
    """Lennard-Jones with one parameter set for both elements has no chemistry: its alloys
    are no worse than its elements, EMT's cost 22-55 meV/atom."""
    config = TransferabilityConfig(elements=("Cu", "Ag"), n_volumes=5, vacancy_sites=32,
                                   relax_steps=5, slab_layers=3, md_steps=10, md_snapshots=2,
                                   stability_runs=(), cluster_fractions=(),
                                   formation_tolerance=0.015)
    result = transferability(LennardJones(), EMT(), (), config)
    formation = [c for c in result.checks if c.name.startswith("formation")]
    assert len(formation) == 5
    assert not any(c.passed for c in formation)
    assert all(c.value > 15 for c in formation)
    write_report(result, tmp_path)
    assert (tmp_path / "transferability.md").read_text().startswith(
        'Verdict: <span style="color:red">**FAIL**</span>: formation L12 Cu3Ag')


def test_surface_md_of_emt_against_itself_passes():
    result = transferability(EMT(), EMT(), (), FAST)
    assert [t.cell for t in result.md] == ["vacancy", "surface (0001)"]
    assert [len(t.step) for t in result.md] == [2, 2]  # 10 steps observed every 10
    assert result.passed


def test_an_eos_without_a_minimum_near_the_samples_is_no_equilibrium():
    """An untrained model's curve can fit to a negative V0 (a CI run of the binary end-to-end
    test built a cell of complex lattice vectors from one): NaN, and nothing is built on it."""
    volumes = np.linspace(10.0, 14.0, 7)
    v0, _, b = B.eos(volumes, 0.01 * (volumes - 12.0) ** 2)
    assert v0 == pytest.approx(12.0, rel=1e-3)
    assert b > 0
    for energies in (-0.5 * volumes, -((volumes - 9.0) ** 2), 1.0 / volumes**3):
        v0, _, _ = B.eos(volumes, energies)
        assert math.isnan(v0) or 5.0 <= v0 <= 28.0
    far = B.eos(volumes, 0.001 * (volumes - 40.0) ** 2)  # a minimum at 40, far outside
    assert all(math.isnan(x) for x in far)
    phase = B.Phase("hcp", math.nan, math.nan, math.nan)
    assert math.isnan(phase.a)
    cu = alloys.compounds("Cu", "Ag")["B2 CuAg"]
    ground = {"Cu": phase, "Ag": B.Phase("fcc", 17.0, 0.0, 100.0)}
    assert all(math.isnan(x) for x in alloys.formation_energy(cu, ground, EMT_SOURCE))
