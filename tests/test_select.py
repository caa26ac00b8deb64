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
from pyiron_assyst.core.lineage import child_uuid, stamp_root
from pyiron_assyst.stages.select import (
    METHODS,
    RadialDescriptor,
    SelectConfig,
    descriptors,
    leverage_scores,
    select,
)


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
    config = SelectConfig(method="leverage", fraction=0.3, seed=seed)
    kept = {a.info["uuid"] for a in select(structures, config)[0]}
    shuffled = {a.info["uuid"] for a in select([structures[i] for i in permutation], config)[0]}
    assert kept == shuffled


def test_seeds_change_the_sampled_choice_but_not_the_top_k():
    structures = pool()
    choices = {frozenset(a.info["uuid"] for a in select(
        structures, SelectConfig(method=m, fraction=0.3, seed=s))[0])
        for m in ("leverage",) for s in range(5)}
    assert len(choices) > 1
    tops = {frozenset(a.info["uuid"] for a in select(
        structures, SelectConfig(method="leverage_top", fraction=0.3, seed=s))[0])
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
        structures, SelectConfig(method=m, fraction=0.3, seed=s, keep_compositions=False))[0]])
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


def test_config_round_trips_through_json():
    config = SelectConfig(method="farthest", count=5, cost_aware=True,
                          cost_model=CostModel(0.2, 2.5), descriptor=RadialDescriptor(4.0, 6))
    assert config_from_json(config.to_json()) == config
    assert json.loads(config.to_json())["@config"] == "SelectConfig"
    assert hash(config) == hash(config_from_json(config.to_json()))


def test_small_and_large_cell_routes_give_the_same_descriptor(monkeypatch):
    from pyiron_assyst.stages import select as stage

    structures = pool(n_cu=6, n_cuag=3, n_big=3)
    table = descriptors(structures)
    monkeypatch.setattr(stage, "_SMALL", 0)  # every cell through ASE's neighbour list
    np.testing.assert_allclose(descriptors(structures), table, rtol=0, atol=1e-12)
