"""The select stage: leverage, baselines, cost weighting, coverage, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiron_assyst.calculators import EMT
from pyiron_assyst.calculators.cost import CostModel, kpoint_count, predicted_costs
from pyiron_assyst.calculators.structure_settings import StructureSettings
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.lineage import child_uuid, stamp_root, uuid_of
from pyiron_assyst.stages.descriptors import PowerSpectrum, legendre
from pyiron_assyst.stages.select import (
    METHODS,
    RadialDescriptor,
    SelectConfig,
    descriptors,
    leverage_scores,
    select,
)
from pyiron_assyst.stages.short_range import SHORT_RANGE_KEY, is_short_range

RADIAL = RadialDescriptor()
"""The cheap descriptor, for tests of the selection logic that call the stage many times."""


def pool(n_cu: int = 24, n_cuag: int = 6, n_big: int = 0) -> list[Atoms]:
    """Rattled and strained Cu cells (1-2 atoms), a few CuAg cells, optionally 8-atom cells."""
    out = []
    rng = np.random.default_rng(0)
    for i in range(n_cu + n_cuag + n_big):
        if i < n_cu:
            atoms = bulk("Cu", "fcc", a=3.4 + 0.4 * rng.random()) * (1 + i % 2, 1, 1)
        elif i < n_cu + n_cuag:
            atoms = bulk("CuAg", "rocksalt", a=5.6 + 0.6 * rng.random())
        else:
            atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
        atoms.rattle(0.05 + 0.1 * rng.random(), seed=i)
        out.append(stamp_root(atoms, child_uuid("select-test", "pool", "x", i)))
    return out


def test_leverage_of_a_constructed_design_is_exact():
    design = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0]])
    # hat matrix of the standardised columns: 1/2 for the four arms, 0 at the centre; the
    # ridge (1e-3 of the mean eigenvalue) shrinks each by 1 / (1 + 1e-3)
    expected = np.array([0.5, 0.5, 0.5, 0.5, 0.0]) / 1.001
    np.testing.assert_allclose(leverage_scores(design, 1e-3), expected, rtol=0, atol=1e-12)
    outlier = np.vstack([np.random.default_rng(1).normal(size=(50, 3)), [[30.0, 0, 0]]])
    scores = leverage_scores(outlier, 1e-6)
    assert scores.argmax() == 50
    assert scores[50] > 0.9  # ~ 900 / (50 + 900) from its column alone
    assert abs(scores.sum() - 3) < 1e-3  # the trace: the number of parameters


def test_descriptor_counts_neighbours_per_element_pair():
    cu = bulk("Cu", "fcc", a=3.6)
    vector = RadialDescriptor(cutoff=3.0, n_radial=3).of(cu, [29, 47])
    blocks, composition = vector[:-2].reshape(2, 2, 3), vector[-2:]
    np.testing.assert_array_equal(composition, [1.0, 0.0])
    assert np.all(blocks[1] == 0)
    assert np.all(blocks[0, 1] == 0)
    d = 3.6 / np.sqrt(2)  # 12 nearest neighbours within 3 Å
    centres, width = np.array([1.0, 2.0, 3.0]), 1.0
    expected = 12 * np.exp(-0.5 * ((d - centres) / width) ** 2) * 0.5 * (
        np.cos(np.pi * d / 3.0) + 1)
    np.testing.assert_allclose(blocks[0, 0], expected, rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_counts_reasons_and_notes(method):
    structures = pool()
    kept, report = select(structures, SelectConfig(method=method, fraction=0.4, seed=3))
    assert report.n_in == report.n_candidates == 30
    assert report.n_out == len(kept) == 12
    assert report.drop_counts() == {"not_selected": 18}
    notes = dict(report.notes)
    assert notes["compositions_pool"] == notes["compositions_kept"] == 2
    assert notes["predicted_core_hours_saved"] == pytest.approx(
        notes["predicted_core_hours_pool"] - notes["predicted_core_hours_kept"])
    assert {a.info["uuid"] for a in kept} | {d.uuid for d in report.drops} == {
        a.info["uuid"] for a in structures}
    uuids = [a.info["uuid"] for a in structures]
    assert [a.info["uuid"] for a in kept] == sorted(
        (a.info["uuid"] for a in kept), key=uuids.index)  # input order kept
    assert all(a.info["predicted_cost"] > 0 for a in kept)
    assert "uuid" in structures[0].info
    assert "selection_score" not in structures[0].info


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31), st.permutations(list(range(30))))
def test_choice_depends_on_pool_and_seed_only(seed, permutation):
    structures = pool()
    config = SelectConfig(method="leverage", fraction=0.3, seed=seed, descriptor=RADIAL)
    kept = {a.info["uuid"] for a in select(structures, config)[0]}
    shuffled = {a.info["uuid"] for a in select([structures[i] for i in permutation], config)[0]}
    assert kept == shuffled


def test_seeds_change_the_sampled_choice_but_not_the_top_k():
    structures = pool()
    choices = {frozenset(a.info["uuid"] for a in select(
        structures, SelectConfig(method=m, fraction=0.3, seed=s, descriptor=RADIAL))[0])
        for m in ("leverage",) for s in range(5)}
    assert len(choices) > 1
    tops = {frozenset(a.info["uuid"] for a in select(
        structures, SelectConfig(method="leverage_top", fraction=0.3, seed=s,
                                 descriptor=RADIAL))[0])
        for s in range(5)}
    assert len(tops) == 1


def test_top_k_keeps_the_highest_leverages():
    structures = pool()
    config = SelectConfig(method="leverage_top", count=7, keep_compositions=False)
    kept, _ = select(structures, config)
    scores = leverage_scores(descriptors(structures))
    top = {structures[i].info["uuid"] for i in np.argsort(-scores)[:7]}
    assert {a.info["uuid"] for a in kept} == top
    assert min(a.info["selection_score"] for a in kept) >= np.sort(scores)[-7] - 1e-12


def test_leverage_sampling_prefers_high_leverage_over_random():
    """Mean leverage of the kept set over 40 seeds: leverage sampling above uniform by more
    than 5 standard errors of the difference."""
    structures = pool()
    means = {m: [np.mean([a.info["selection_score"] for a in select(
        structures, SelectConfig(method=m, fraction=0.3, seed=s, keep_compositions=False,
                                 descriptor=RADIAL))[0]])
        for s in range(40)] for m in ("leverage", "random")}
    diff = np.mean(means["leverage"]) - np.mean(means["random"])
    error = np.sqrt(np.var(means["leverage"]) / 40 + np.var(means["random"]) / 40)
    assert diff > 5 * error


def test_cost_weighting_moves_the_choice_to_cheaper_structures():
    structures = pool(n_cu=12, n_cuag=0, n_big=12)
    plain = select(structures, SelectConfig(method="leverage_top", fraction=0.5))[1]
    aware = select(structures, SelectConfig(method="leverage_top", fraction=0.5,
                                            cost_aware=True))[1]
    assert dict(aware.notes)["predicted_core_hours_kept"] < dict(
        plain.notes)["predicted_core_hours_kept"]
    farthest = select(structures, SelectConfig(method="farthest", fraction=0.5,
                                               cost_aware=True))[0]
    assert np.mean([len(a) for a in farthest]) < np.mean([len(a) for a in structures])


def test_every_composition_survives_even_a_tiny_selection():
    structures = pool(n_cu=28, n_cuag=2)
    kept, report = select(structures, SelectConfig(method="leverage_top", count=1))
    assert {a.get_chemical_formula(empirical=True) for a in kept} == {"Cu", "AgCu"}
    assert report.n_out == 2  # one per composition, more than asked
    bare, _ = select(structures, SelectConfig(method="random", count=1, keep_compositions=False))
    assert len(bare) == 1


def test_farthest_starts_at_the_highest_leverage_then_goes_far():
    structures = pool()
    kept, _ = select(structures, SelectConfig(method="farthest", count=2,
                                              keep_compositions=False))
    scores = leverage_scores(descriptors(structures))
    assert structures[int(np.argmax(scores))].info["uuid"] in {a.info["uuid"] for a in kept}


def test_cost_model_uses_atoms_and_the_derived_kpoint_mesh():
    model = CostModel(reference_core_hours=0.5, atom_exponent=2.0)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    dft = StructureSettings(EMT(), kpoint_density=3.0)
    k = kpoint_count(cu, dft)
    assert k == int(np.prod(dft.derive(cu).kpts)) > 1
    np.testing.assert_array_equal(predicted_costs([cu], dft, model), [0.5 * 16 * k])
    np.testing.assert_array_equal(predicted_costs([cu], EMT(), model), [0.5 * 16])


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"method": "best"}, "method"), ({"fraction": 0.0}, "fraction"),
    ({"fraction": 1.5}, "fraction"), ({"count": 0}, "count"), ({"count": 2.5}, "count"),
    ({"seed": 1.5}, "seed"), ({"regularization": 0}, "regularization"),
    ({"cost_aware": "yes"}, "cost_aware"), ({"cost_model": 3}, "cost_model"),
])
def test_bad_settings_name_their_field(kwargs, field):
    with pytest.raises(ConfigError, match=rf"SelectConfig\.{field}"):
        SelectConfig(**kwargs)
    with pytest.raises(ConfigError, match=r"CostModel\.atom_exponent"):
        CostModel(atom_exponent=5)
    with pytest.raises(ConfigError, match=r"RadialDescriptor\.n_radial"):
        RadialDescriptor(n_radial=0)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"cutoff": 0.0}, "cutoff"), ({"cutoff": float("inf")}, "cutoff"),
    ({"n_radial": 0}, "n_radial"), ({"l_max": -1}, "l_max"), ({"l_max": 9}, "l_max"),
    ({"l_max": 2.0}, "l_max"), ({"reduce": "max"}, "reduce"),
])
def test_bad_power_spectrum_settings_name_their_field(kwargs, field):
    with pytest.raises(ConfigError, match=rf"PowerSpectrum\.{field}"):
        PowerSpectrum(**kwargs)
    with pytest.raises(ConfigError, match=r"SelectConfig\.descriptor.*PowerSpectrum"):
        SelectConfig(descriptor=CostModel())


def test_config_round_trips_through_json():
    config = SelectConfig(method="farthest", count=5, cost_aware=True,
                          cost_model=CostModel(0.2, 2.5), descriptor=RadialDescriptor(4.0, 6))
    assert config_from_json(config.to_json()) == config
    assert json.loads(config.to_json())["@config"] == "SelectConfig"
    assert hash(config) == hash(config_from_json(config.to_json()))
    power = SelectConfig(descriptor=PowerSpectrum(4.5, 5, 3, "mean"))
    assert config_from_json(power.to_json()) == power
    assert hash(power) == hash(config_from_json(power.to_json())) != hash(SelectConfig())
    assert json.loads(power.to_json())["descriptor"]["@config"] == "PowerSpectrum"


def _radial(d: float, cutoff: float, n_radial: int) -> np.ndarray:
    centres, width = np.linspace(cutoff / n_radial, cutoff, n_radial), cutoff / n_radial
    return np.exp(-0.5 * ((d - centres) / width) ** 2) * 0.5 * (np.cos(np.pi * d / cutoff) + 1)


def test_legendre_polynomials_are_exact():
    x = np.array([-1.0, -0.3, 0.0, 0.5, 1.0])
    p = legendre(x, 4)
    np.testing.assert_allclose(p[2], (3 * x**2 - 1) / 2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(p[3], (5 * x**3 - 3 * x) / 2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(p[4], (35 * x**4 - 30 * x**2 + 3) / 8, rtol=0, atol=1e-15)


def test_power_spectrum_of_a_dimer_is_exact():
    """Each atom of a Cu dimer sees one neighbour: p[n, n', l] = (2l+1)/(4π) g_n g_n' (P_l(1)
    = 1), summed over the two atoms; averaged, one atom's worth; the composition appended."""
    d, cutoff, n_r, l_max = 2.5, 3.0, 3, 2
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [d, 0, 0]])
    g = _radial(d, cutoff, n_r)
    one = np.array([(2 * ell + 1) / (4 * np.pi) * g[n] * g[m] for n in range(n_r)
                    for m in range(n, n_r) for ell in range(l_max + 1)])
    summed = PowerSpectrum(cutoff, n_r, l_max, "sum").of(dimer, [29])
    np.testing.assert_allclose(summed, [*(2 * one), 2.0], rtol=1e-12, atol=0)
    mean = PowerSpectrum(cutoff, n_r, l_max, "mean").of(dimer, [29])
    np.testing.assert_allclose(mean, [*one, 1.0], rtol=1e-12, atol=0)
    # a CuAg dimer: the Cu centre sees only Ag, the Ag centre only Cu; blocks (Cu,Cu), (Cu,Ag),
    # (Ag,Ag) of each centre, the (Cu,Ag) block a full n x n' matrix
    mixed = PowerSpectrum(cutoff, n_r, l_max).of(Atoms("CuAg", positions=dimer.positions),
                                                 [29, 47])
    n_same, n_cross = len(one), n_r * n_r * (l_max + 1)
    assert mixed.shape == (2 * (2 * n_same + n_cross) + 2,)
    cu_centre, ag_centre = mixed[:2 * n_same + n_cross], mixed[2 * n_same + n_cross:-2]
    np.testing.assert_allclose(cu_centre[n_same + n_cross:], one, rtol=1e-12)  # (Ag, Ag)
    np.testing.assert_allclose(ag_centre[:n_same], one, rtol=1e-12)  # (Cu, Cu)
    assert not cu_centre[:n_same + n_cross].any()
    assert not ag_centre[n_same:].any()
    np.testing.assert_array_equal(mixed[-2:], [1.0, 1.0])


def test_power_spectrum_is_invariant_under_rotation_translation_and_permutation():
    rng = np.random.default_rng(4)
    for atoms in pool(n_cu=2, n_cuag=2, n_big=1):
        reference = PowerSpectrum().of(atoms, [29, 47])
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        turned = atoms.copy()
        turned.set_cell(atoms.cell.array @ q.T, scale_atoms=False)
        turned.positions = atoms.positions @ q.T + rng.normal(size=3)
        order = rng.permutation(len(atoms))
        for other in (turned, turned[order]):
            np.testing.assert_allclose(PowerSpectrum().of(other, [29, 47]), reference,
                                       rtol=1e-9, atol=1e-12)


def test_power_spectrum_sees_angles_the_radial_descriptor_cannot():
    """A bent and a straight Cu trimer (bonds 2.5 Å at 90° and 180°; the outer atoms 3.5 and
    5 Å apart, beyond the 3 Å cutoff) have the same distances within the cutoff."""
    def trimer(angle: float) -> Atoms:
        return Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0],
                                       [2.5 * np.cos(angle), 2.5 * np.sin(angle), 0]])
    bent, straight = trimer(np.pi / 2), trimer(np.pi)
    radial = RadialDescriptor(cutoff=3.0, n_radial=4)
    np.testing.assert_allclose(radial.of(bent, [29]), radial.of(straight, [29]), atol=1e-15)
    power = PowerSpectrum(cutoff=3.0, n_radial=2, l_max=2)
    # the centre atom's cross term 2 g_n g_n' (2l+1)/(4π) P_l(cos θ): P_1 = 0 bent, -1 straight
    g = _radial(2.5, 3.0, 2)
    diff = power.of(straight, [29]) - power.of(bent, [29])
    expected = np.array([2 * g[n] * g[m] * (2 * ell + 1) / (4 * np.pi)
                         * (legendre(np.array(-1.0), 2)[ell] - legendre(np.array(0.0), 2)[ell])
                         for n in range(2) for m in range(n, 2) for ell in range(3)])
    np.testing.assert_allclose(diff, [*expected, 0.0], rtol=1e-12, atol=1e-15)
    assert np.abs(diff).max() > 1e-3


def test_small_and_large_cell_routes_give_the_same_descriptor(monkeypatch):
    from pyiron_assyst.stages import descriptors as module

    structures = pool(n_cu=6, n_cuag=3, n_big=3)
    table = descriptors(structures, RadialDescriptor())
    monkeypatch.setattr(module, "_SMALL", 0)  # every cell through ASE's neighbour list
    np.testing.assert_allclose(descriptors(structures, RadialDescriptor()), table, rtol=0,
                               atol=1e-12)


def test_pair_vectors_match_ase_neighbor_list():
    from ase.neighborlist import neighbor_list

    from pyiron_assyst.numerics.distances import pair_vectors

    rng = np.random.default_rng(2)
    molecule = Atoms("Cu3", positions=rng.random((3, 3)) * 4)
    slab = bulk("Cu", "fcc", a=3.6) * (1, 1, 2)
    slab.pbc = (True, True, False)
    for atoms in [*pool(n_cu=3, n_cuag=2, n_big=1), molecule, slab]:
        expected = neighbor_list("ijD", atoms, 5.0)
        got = pair_vectors(atoms.positions, atoms.cell.array, atoms.pbc, 5.0)
        order = [np.lexsort((*np.round(d, 9).T, j, i)) for i, j, d in (expected, got)]
        assert len(got[0]) == len(expected[0]) > 0
        for a, b in zip(expected, got):
            np.testing.assert_allclose(b[order[1]], a[order[0]], rtol=0, atol=1e-9)


def _bench_select():
    """The benchmark script as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_select.py"
    spec = importlib.util.spec_from_file_location("bench_select", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_trains_a_subset_for_the_same_optimizer_steps():
    """bench_select: a fit on 40 % of the pool runs 1/0.4 the epochs (same steps) by default."""
    import argparse

    bench = _bench_select()
    equal = argparse.Namespace(epochs=60, equal_steps=True)
    assert bench.epochs_for(equal, 181, 453) == 150  # 60 × 453 / 181 = 150.2
    assert bench.epochs_for(equal, 453, 453) == 60
    assert bench.epochs_for(argparse.Namespace(epochs=60, equal_steps=False), 181, 453) == 60
    assert bench.DESCRIPTORS["power"] is PowerSpectrum
    assert bench.DESCRIPTORS["radial"] is RadialDescriptor


def test_benchmark_cost_arm_is_the_cost_aware_select_stage():
    """bench_select's ``cost`` arm is leverage with ``cost_aware=True`` on the crystals, the
    other arms are not cost-aware; the short-range structures are kept by every arm."""
    bench = _bench_select()
    structures = pool(12, 0, 12)  # 1-2 atom cells and 8-atom cells: costs 1 to 512
    dimer = stamp_root(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 1.5]]),
                       child_uuid("select-test", "dimer", "x", 0))
    set_info(dimer, SHORT_RANGE_KEY, "dimer")
    uuids = {}
    for arm in ("cost", "leverage", "random"):
        kept, notes = bench.chosen([*structures, dimer], arm, 0.4, 0, "radial")
        assert [a for a in kept if is_short_range(a)] == [dimer]
        uuids[arm] = sorted(uuid_of(a) for a in kept if not is_short_range(a))
        uuids[arm + " hours"] = notes["predicted_core_hours_kept"]
    for arm, cost_aware in (("cost", True), ("leverage", False)):
        expected, _ = select(structures, SelectConfig(fraction=0.4, seed=0, cost_aware=cost_aware,
                                                      descriptor=RadialDescriptor()))
        assert uuids[arm] == sorted(uuid_of(a) for a in expected)
    assert uuids["cost hours"] < uuids["leverage hours"]


def test_benchmark_compares_each_arm_with_random_over_seeds():
    """bench_select's line under the table: difference of the means, ranges, Welch's t; nothing
    for an arm with fewer than two seeds."""
    bench = _bench_select()
    key = "energy_mae_window_mev_per_atom"
    result = {"leverage": [{key: v} for v in (17.0, 19.0, 18.0)],
              "random": [{key: v} for v in (20.0, 24.0, 22.0, 26.0)]}
    line = bench._against_random(result, "leverage")
    assert "-5.0 meV/atom (range 17.0-19.0 against 20.0-26.0;" in line
    # Welch: -5 / sqrt(1/3 + (20/3)/4) = -3.54 (a pooled-variance t would be -3.12)
    assert "Welch's t -3.54" in line
    assert "3 and 4 seeds" in line
    assert bench._against_random({**result, "random": result["random"][:1]}, "leverage") == ""
    assert bench._against_random(result, "cost") == ""


def test_a_target_of_the_whole_pool_passes_it_through_unchanged(monkeypatch):
    """Selection off (``fraction=1``, the pipeline's default; or a count of at least the
    pool): the very input structures come back, no descriptor is computed, nothing dropped."""
    from pyiron_assyst.stages import select as module

    def no_descriptors(*args, **kwargs):
        raise AssertionError("descriptors computed for a selection that keeps everything")

    monkeypatch.setattr(module, "descriptors", no_descriptors)
    structures = pool(8, 2)
    for config in (SelectConfig(fraction=1.0), SelectConfig(count=10, method="random"),
                   SelectConfig(count=50)):
        kept, report = select(structures, config, EMT())
        assert all(a is b for a, b in zip(kept, structures, strict=True))
        assert report.drops == ()
        assert report.n_in == report.n_out == 10
        assert dict(report.notes) == {"selection_off": 1.0}
        assert "selection_off: 1" in report.summary()
    assert SelectConfig(fraction=1.0).keeps_all
    assert not SelectConfig(fraction=1.0, count=10).keeps_all
    assert not SelectConfig().keeps_all
    empty, report = select([], SelectConfig(fraction=1.0))
    assert empty == []
    assert report.n_out == 0
