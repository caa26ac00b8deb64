"""Perturbations and the perturb stage: statistics, bounds, identities, retries, round trips."""

import dataclasses
import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiron_assyst.core.config import ConfigError, NotPersistableError, config_from_json
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.lineage import child_uuid, rng_for, root_uuid, stamp_root, uuid_of
from pyiron_assyst.stages.filters import DistanceFilter, FunctionFilter
from pyiron_assyst.stages.perturb import perturb, perturb_with
from pyiron_assyst.stages.perturbations import (
    ElementScaledRattle,
    FunctionPerturbation,
    Perturbation,
    PerturbationSkip,
    PerturbConfig,
    RandomChoice,
    Rattle,
    Series,
    Stretch,
    as_perturbation,
)

Z = 5.0  # tolerance in standard errors for statistical tests


def cu(cubic=True, repeat=1, index=0):
    atoms = bulk("Cu", a=3.6, cubic=cubic).repeat(repeat)
    return stamp_root(atoms, root_uuid(0, "Cu", 3, 225, index))


def shift_x(atoms):
    """Deterministic, rng-free perturbation (module level: persistable)."""
    atoms.positions[:, 0] += 0.1
    return atoms


def jitter(atoms, rng):
    atoms.positions += rng.uniform(-0.01, 0.01, atoms.positions.shape)
    return atoms


def deformation(before, after):
    """``F`` with ``after.cell = before.cell @ F``."""
    return np.linalg.solve(before.cell.array, after.cell.array)


# --------------------------------------------------------------------------- rattles


def test_rattle_displacements_are_gaussian_with_sigma():
    atoms = cu(repeat=(8, 8, 8))  # 2048 atoms, 6144 components
    sigma = 0.07
    out = Rattle(sigma).apply(atoms, np.random.default_rng(1))
    u = (out.positions - atoms.positions).ravel()
    n = len(u)
    assert abs(u.mean()) < Z * sigma / np.sqrt(n)
    assert abs(u.std() - sigma) < Z * sigma / np.sqrt(2 * n)
    np.testing.assert_array_equal(out.cell.array, atoms.cell.array)


def test_element_scaled_rattle_scales_per_element():
    atoms = cu(repeat=(8, 8, 8))
    atoms.symbols[::2] = "Ag"
    sigma, reference = 0.02, {"Cu": 2.5, "Ag": 2.9}
    out = ElementScaledRattle(sigma, reference).apply(atoms, np.random.default_rng(2))
    u = out.positions - atoms.positions
    for symbol, length in reference.items():
        part = u[atoms.symbols == symbol].ravel()
        expected = sigma * length
        assert abs(part.mean()) < Z * expected / np.sqrt(len(part))
        assert abs(part.std() - expected) < Z * expected / np.sqrt(2 * len(part))


def test_element_scaled_rattle_missing_element_is_dropped_with_reason():
    atoms = cu()
    atoms.symbols[0] = "Ni"
    with pytest.raises(ValueError, match="Ni"):
        ElementScaledRattle(0.1, {"Cu": 2.5}).apply(atoms, np.random.default_rng(0))
    out, report = perturb([atoms, cu(index=1)], ElementScaledRattle(0.1, {"Cu": 2.5}))
    assert len(out) == 1
    assert report.drop_counts() == {"perturbation_error": 1}
    assert "['Ni']" in report.drops[0].detail


def test_rattle_does_not_modify_its_input():
    atoms = cu()
    before = atoms.copy()
    Rattle(0.1).apply(atoms, np.random.default_rng(0))
    Stretch(0.1, 0.1).apply(atoms, np.random.default_rng(0))
    assert atoms == before
    assert atoms.info == before.info


# --------------------------------------------------------------------------- one-atom cells


def test_one_atom_cells_are_skipped_without_supercell():
    one, four = cu(cubic=False), cu(index=1)
    with pytest.raises(PerturbationSkip) as skip:
        Rattle(0.1).apply(one, np.random.default_rng(0))
    assert skip.value.reason == "one_atom_cell"
    out, report = perturb([one, four], (Rattle(0.1), Stretch(0.05, 0.01)))
    assert [len(a) for a in out] == [1, 4, 4]  # the stretch of the one-atom cell is kept
    assert report.drop_counts() == {"one_atom_cell": 1}
    assert report.drops[0].uuid == child_uuid(uuid_of(one), "perturb:rattle(0.1)",
                                              Rattle(0.1).config_hash(), 0)


def test_one_atom_cells_become_supercells_along_periodic_directions():
    rattle = Rattle(0.1, supercell=True)
    out = rattle.apply(cu(cubic=False), np.random.default_rng(0))
    assert len(out) == 8
    assert out.info["supercell"] == 2
    np.testing.assert_allclose(out.cell.array, 2 * cu(cubic=False).cell.array)
    layer = Atoms("Cu", cell=[2.5, 2.5, 20.0], pbc=(True, True, False))
    assert len(rattle.apply(layer, np.random.default_rng(0))) == 4
    scaled = ElementScaledRattle(0.01, {"Cu": 2.5}, supercell=True)
    assert len(scaled.apply(cu(cubic=False), np.random.default_rng(0))) == 8
    lone = Atoms("Cu", cell=[10.0] * 3, pbc=False)
    out, report = perturb([cu(cubic=False), lone], rattle)
    assert [len(a) for a in out] == [8]
    assert out[0].info["supercell"] == 2
    assert report.drop_counts() == {"one_atom_cell": 1}
    assert len(Rattle(0.1).apply(cu(), np.random.default_rng(0))) == 4  # no supercell needed


# --------------------------------------------------------------------------- stretch


@pytest.mark.parametrize(("hydro", "shear", "minimum"), [(0.1, 0.05, 1e-3), (0.3, 0.2, 0.1),
                                                   (0.05, 0.0, 0.01), (0.0, 0.1, 0.05)])
def test_stretch_strain_components_within_bounds(hydro, shear, minimum):
    atoms = bulk("Cu", "fcc", a=3.6)  # primitive, skewed cell
    stretch = Stretch(hydro, shear, minimum_strain=minimum)
    for seed in range(200):
        out = stretch.apply(atoms, np.random.default_rng(seed))
        f = deformation(atoms, out)
        np.testing.assert_allclose(f, f.T, atol=1e-12)
        diag = np.abs(np.diag(f) - 1.0)
        off = np.abs(f[np.triu_indices(3, 1)])
        tol = 1e-12
        if hydro:
            assert np.all((diag >= minimum - tol) & (diag <= hydro + tol))
        else:
            assert np.all(diag < tol)
        if shear:
            assert np.all((off >= minimum - tol) & (off <= shear + tol))
        else:
            assert np.all(off < tol)
        assert out.cell.volume == pytest.approx(atoms.cell.volume * np.linalg.det(f), rel=1e-12)
        np.testing.assert_allclose(out.get_scaled_positions(wrap=False),
                                   atoms.get_scaled_positions(wrap=False), atol=1e-12)


def test_stretch_signs_and_magnitudes_are_spread():
    stretch = Stretch(0.2, 0.1, minimum_strain=0.0)
    fs = np.array([deformation(cu(), stretch.apply(cu(), np.random.default_rng(s)))
                   for s in range(400)])
    diag = fs[:, 0, 0] - 1.0
    # uniform magnitude in [0, 0.2] with random sign: mean 0, std 0.2 / sqrt(3)
    assert abs(diag.mean()) < Z * (0.2 / np.sqrt(3)) / np.sqrt(len(diag))
    assert abs(diag.std() - 0.2 / np.sqrt(3)) < 0.1 * 0.2 / np.sqrt(3)


def test_stretch_strains_only_periodic_directions_of_a_slab():
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)  # pbc (T, T, F), c along z
    slab.rotate(30, "x", rotate_cell=True)  # a general orientation
    before = slab.copy()
    out = Stretch(0.1, 0.1).apply(slab, np.random.default_rng(4))
    np.testing.assert_allclose(out.cell[2], before.cell[2], atol=1e-12)  # vacuum vector kept
    normal = np.cross(before.cell[0], before.cell[1])
    normal /= np.linalg.norm(normal)
    np.testing.assert_allclose(out.positions @ normal, before.positions @ normal, atol=1e-12)
    assert not np.allclose(out.cell[:2], before.cell[:2])


def test_stretch_skips_clusters_and_validates():
    cluster = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], pbc=False)
    out, report = perturb([cluster], Stretch(0.1, 0.1))
    assert out == []
    assert report.drop_counts() == {"no_periodic_direction": 1}
    for kwargs, field in (({"hydro": 1.0, "shear": 0.1}, "hydro"),
                          ({"hydro": 0.1, "shear": -0.1}, "shear"),
                          ({"hydro": 0.1, "shear": 0.1, "minimum_strain": -1.0},
                           "minimum_strain"),
                          ({"hydro": 0.01, "shear": 0.1, "minimum_strain": 0.05},
                           "minimum_strain"),
                          ({"hydro": float("nan"), "shear": 0.1}, "hydro"),
                          ({"hydro": 0.0, "shear": 0.0}, "hydro")):
        with pytest.raises(ConfigError, match=rf"Stretch\.{field}"):
            Stretch(**kwargs)
    Stretch(0.0, 0.1, minimum_strain=0.05)  # a zero maximum needs no minimum


def test_large_stretches_never_invert_the_cell():
    stretch = Stretch(0.9, 0.9, minimum_strain=0.0)
    for seed in range(200):
        f = deformation(cu(), stretch.apply(cu(), np.random.default_rng(seed)))
        assert np.linalg.eigvalsh(f).min() > 0


# --------------------------------------------------------------------------- composition


def test_series_applies_in_order_on_one_stream():
    a, b = Rattle(0.1), Stretch(0.1, 0.05)
    atoms = cu()
    rng = np.random.default_rng(9)
    expected = b.apply(a.apply(atoms, rng), rng)
    got = (a + b).apply(atoms, np.random.default_rng(9))
    np.testing.assert_array_equal(got.positions, expected.positions)
    np.testing.assert_array_equal(got.cell.array, expected.cell.array)
    reversed_ = (b + a).apply(atoms, np.random.default_rng(9))
    assert not np.allclose(reversed_.positions, got.positions)
    assert (a + b) + a == a + (b + a) == Series((a, b, a))
    assert (a + b).name == "rattle(0.1)+stretch(hydro=0.1, shear=0.05)"
    assert isinstance(a + shift_x, Series)
    assert isinstance(shift_x + a, Series)
    with pytest.raises(ConfigError, match=r"Series\.perturbations"):
        Series(())


@pytest.mark.parametrize("chance", [0.0, 0.3, 1.0])
def test_random_choice_frequency_matches_chance(chance):
    choice = RandomChoice(Rattle(0.05), Stretch(0.1, 0.0), chance=chance)
    atoms = cu()
    n = 1500
    picked_b = sum(not np.allclose(choice.apply(atoms, np.random.default_rng(s)).cell.array,
                                   atoms.cell.array) for s in range(n))
    if chance in (0.0, 1.0):
        assert picked_b == chance * n
    else:
        assert abs(picked_b / n - chance) < Z * np.sqrt(chance * (1 - chance) / n)


def test_random_choice_validates_and_names():
    with pytest.raises(ConfigError, match=r"RandomChoice\.chance"):
        RandomChoice(Rattle(0.1), Rattle(0.2), chance=1.5)
    with pytest.raises(ConfigError, match=r"RandomChoice\.b"):
        RandomChoice(Rattle(0.1), "stretch")
    choice = RandomChoice(Rattle(0.1), Stretch(0.2, 0.1), chance=0.25)
    assert choice.name == "choice(rattle(0.1), stretch(hydro=0.2, shear=0.1), chance=0.25)"


def test_readable_names():
    assert Rattle(0.1).name == "rattle(0.1)"
    assert Rattle(0.25, supercell=True).name == "rattle(0.25, supercell)"
    assert ElementScaledRattle(0.05, {"Cu": 2.5}).name == "scaled_rattle(0.05)"
    assert Stretch(0.05, 0.005).name == "stretch(hydro=0.05, shear=0.005)"
    assert FunctionPerturbation(shift_x).name == "shift_x"
    assert as_perturbation(lambda a: a).name == "<lambda>"


# --------------------------------------------------------------------------- the stage


def test_perturb_output_order_identity_and_info():
    parents = [cu(index=0), cu(index=1)]
    perturbations = (Rattle(0.1), Stretch(0.05, 0.01), Rattle(0.1))
    out, report = perturb(parents, perturbations, seed=3)
    assert (report.stage, report.n_in, report.n_candidates, report.n_out) == ("perturb", 2, 6, 6)
    expected = []
    for parent in parents:
        for p, copy in zip(perturbations, (0, 0, 1)):
            expected.append(child_uuid(uuid_of(parent), f"perturb:{p.name}", p.config_hash(),
                                       copy))
    assert [a.info["uuid"] for a in out] == expected
    assert len(set(expected)) == 6
    first = out[0]
    assert first.info["parent"] == uuid_of(parents[0]) == first.info["root"]
    assert first.info["step"] == "perturb:rattle(0.1)"
    assert first.info["perturbation"] == "rattle(0.1)"
    assert first.info["attempt"] == 0
    np.testing.assert_array_equal(
        first.positions, Rattle(0.1).apply(parents[0], rng_for(3, expected[0], 0)).positions)


def test_equal_perturbations_make_distinct_copies():
    out, report = perturb([cu()], (Rattle(0.1),) * 4)
    assert report.n_out == 4
    assert len({a.info["uuid"] for a in out}) == 4
    for i in range(4):
        for j in range(i):
            assert not np.allclose(out[i].positions, out[j].positions)


def test_perturbed_structures_drop_labels_constraints_and_parent_stage_info():
    parent = cu()
    parent.calc = SinglePointCalculator(parent, energy=-1.0, forces=np.zeros((4, 3)))
    parent.set_constraint(FixAtoms([0, 1]))
    set_info(parent, "converged", True)
    set_info(parent, "relax_steps", 12)
    set_info(parent, "formula", "Cu4")
    before = parent.copy()
    out, _ = perturb([parent], Rattle(0.1))
    child = out[0]
    assert child.calc is None
    assert child.constraints == []
    assert not np.allclose(child.positions[:2], parent.positions[:2])  # constraints ignored
    assert "converged" not in child.info
    assert "relax_steps" not in child.info
    assert child.info["formula"] == "Cu4"
    assert parent == before
    assert parent.info == before.info
    assert parent.calc.results["energy"] == -1.0
    assert len(parent.constraints) == 1


def _run(atoms_list, perturbations, seed):
    out, _ = perturb(atoms_list, perturbations, seed=seed)
    return {a.info["uuid"]: a for a in out}


@settings(max_examples=25, deadline=None)
@given(sigma=st.floats(0.001, 0.5), hydro=st.floats(0.0, 0.5), shear=st.floats(0.01, 0.3),
       chance=st.floats(0.0, 1.0), seed=st.integers(-2**40, 2**40))
def test_perturb_is_deterministic_and_batch_independent(sigma, hydro, shear, chance, seed):
    stretch = Stretch(hydro, shear, minimum_strain=min(1e-3, hydro or 1, shear or 1))
    perturbations = (Rattle(sigma), RandomChoice(stretch, Rattle(sigma) + stretch, chance),
                     Rattle(sigma))
    alone = _run([cu(index=0)], perturbations, seed)
    batch = _run([cu(index=5), cu(cubic=False, index=6), cu(index=0)], perturbations, seed)
    assert len(alone) == 3
    for uuid, atoms in alone.items():
        other = batch[uuid]
        np.testing.assert_array_equal(atoms.positions, other.positions)
        np.testing.assert_array_equal(atoms.cell.array, other.cell.array)
        assert atoms.info == other.info
    reseeded = _run([cu(index=0)], perturbations, seed + 1)
    assert all(not np.array_equal(reseeded[u].positions, a.positions) for u, a in alone.items())


class RejectFirst:
    """Filter that rejects its first ``n`` calls (a stand-in for a strict distance check)."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, atoms):
        self.calls += 1
        return self.calls > self.n


def test_retries_record_the_passing_attempt():
    parent = cu()
    check = RejectFirst(3)
    out, report = perturb([parent], Rattle(0.1), filter=check, retries=10, seed=7)
    assert check.calls == 4
    assert report.n_out == 1
    child = out[0]
    assert child.info["attempt"] == 3
    expected = Rattle(0.1).apply(parent, rng_for(7, child.info["uuid"], 3))
    np.testing.assert_array_equal(child.positions, expected.positions)


def test_retries_exhausted_is_a_reported_drop():
    check = FunctionFilter(_never)
    out, report = perturb([cu(), cu(index=1)], (Rattle(0.1), Stretch(0.1, 0.1)),
                          filter=DistanceFilter(0.5) & check, retries=3)
    assert out == []
    assert report.drop_counts() == {"filter_retries_exhausted": 4}
    assert report.drops[0].detail == "_never rejected all 3 attempts"
    counter = RejectFirst(100)
    perturb([cu()], Rattle(0.1), filter=counter, retries=5)
    assert counter.calls == 5


def _never(atoms):
    return False


def test_a_realistic_distance_filter_rejects_large_rattles():
    out, report = perturb([cu(repeat=2)], (Rattle(0.4),) * 3 + (Rattle(0.01),),
                          filter=DistanceFilter(1.1), retries=2)
    assert report.drop_counts() == {"filter_retries_exhausted": 3}
    assert out[0].info["perturbation"] == "rattle(0.01)"
    assert DistanceFilter(1.1)(out[0])


def test_errors_in_perturbations_and_filters_are_drops():
    def broken(atoms, rng):
        raise RuntimeError("boom")

    def not_atoms(atoms):
        return 3

    def explode(atoms):
        raise KeyError("bad")

    out, report = perturb([cu()], (broken, not_atoms, Rattle(0.1)))
    assert len(out) == 1
    assert report.drop_counts() == {"perturbation_error": 2}
    assert "boom" in report.drops[0].detail
    assert "int" in report.drops[1].detail
    out, report = perturb([cu()], Rattle(0.1), filter=explode)
    assert out == []
    assert report.drop_counts() == {"filter_error": 1}


def test_function_perturbations_take_rng_if_they_ask_for_it():
    def with_default(atoms, sigma=0.1):
        return atoms

    def named_rng(atoms, rng=None):
        return atoms

    assert FunctionPerturbation(shift_x).takes_rng is False
    assert FunctionPerturbation(jitter).takes_rng is True
    assert FunctionPerturbation(with_default).takes_rng is False
    assert FunctionPerturbation(named_rng).takes_rng is True
    assert FunctionPerturbation(shift_x) == FunctionPerturbation(shift_x, takes_rng=False)
    atoms = cu()
    out = FunctionPerturbation(shift_x).apply(atoms, np.random.default_rng(0))
    np.testing.assert_allclose(out.positions[:, 0] - atoms.positions[:, 0], 0.1)
    a = FunctionPerturbation(jitter).apply(atoms, np.random.default_rng(1))
    b = FunctionPerturbation(jitter).apply(atoms, np.random.default_rng(1))
    np.testing.assert_array_equal(a.positions, b.positions)
    assert atoms == cu()  # the callable got a copy
    with pytest.raises(ConfigError, match=r"FunctionPerturbation\.takes_rng"):
        FunctionPerturbation(shift_x, takes_rng="yes")


def test_function_perturbations_work_live_but_locals_are_not_persistable():
    def local(atoms):
        atoms.positions[0, 0] += 0.2
        return atoms

    for p in (FunctionPerturbation(local), as_perturbation(lambda a: a.copy())):
        assert not p.persistable
        with pytest.raises(NotPersistableError):
            p.to_json()
        assert len(p.config_hash()) == 16
    out, report = perturb([cu()], (local, lambda a, rng: jitter(a, rng), local))
    assert report.n_out == 3
    assert len({a.info["uuid"] for a in out}) == 3
    np.testing.assert_allclose(out[0].positions, out[2].positions)
    assert out[0].info["uuid"] != out[2].info["uuid"]  # equal perturbations, two copies
    with pytest.raises(ConfigError, match=r"as_perturbation\.value"):
        as_perturbation(0.1)
    assert isinstance(Rattle(0.1), Perturbation)


# --------------------------------------------------------------------------- configs


CONFIGS = [
    Rattle(0.1), Rattle(0.2, supercell=True), ElementScaledRattle(0.05, {"Cu": 2.5, "Ag": 2.9}),
    Stretch(0.05, 0.005), Stretch(0.8, 0.0, minimum_strain=0.0),
    Rattle(0.25) + Stretch(0.05, 0.005) + FunctionPerturbation(shift_x),
    RandomChoice(Stretch(0.8, 0.05), Rattle(0.1) + Stretch(0.05, 0.2), chance=0.3),
    RandomChoice(RandomChoice(Rattle(0.1), jitter, 0.1), Rattle(0.1) + Rattle(0.2), 0.9),
    FunctionPerturbation(jitter),
    PerturbConfig(), PerturbConfig((Rattle(0.1),) * 2, DistanceFilter(1.0), retries=3, seed=5),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_perturbations_round_trip_hash_and_pickle(config):
    assert config.persistable
    loaded = config_from_json(config.to_json())
    assert loaded == config
    assert hash(loaded) == hash(config)
    assert loaded.config_hash() == config.config_hash()
    assert pickle.loads(pickle.dumps(config)) == config


def test_config_hashes_tell_perturbations_apart():
    assert len({c.config_hash() for c in CONFIGS}) == len(CONFIGS)
    assert Rattle(0.1).config_hash() == Rattle(0.1).config_hash() != Rattle(0.1000001).config_hash()


def test_numbers_are_normalised_so_equal_configs_hash_equal():
    hashes = {Rattle(x).config_hash() for x in (1, 1.0, np.float32(1), np.int64(1))}
    assert len(hashes) == 1
    assert Stretch(np.float64(0.1), 0).to_json() == Stretch(0.1, 0.0).to_json()
    config = PerturbConfig(Rattle(0.1), retries=np.int64(3), seed=np.int32(4))
    assert config == config_from_json(config.to_json())
    assert type(config.seed) is int
    assert RandomChoice(Rattle(0.1), Rattle(0.2), 1).chance == 1.0


def test_reference_dict_is_frozen_and_validated():
    a = ElementScaledRattle(0.1, {"Cu": 2, "Ag": 2.9})
    assert a.reference == (("Ag", 2.9), ("Cu", 2.0))
    assert a == ElementScaledRattle(0.1, (("Cu", 2.0), ("Ag", 2.9)))
    for bad in ({}, {"Xx": 1.0}, {"Cu": 0.0}, {"Cu": float("inf")}, 2.5):
        with pytest.raises(ConfigError, match=r"ElementScaledRattle\.reference"):
            ElementScaledRattle(0.1, bad)
    with pytest.raises(ConfigError, match=r"ElementScaledRattle\.sigma"):
        ElementScaledRattle(-0.1, {"Cu": 1.0})


@pytest.mark.parametrize(("call", "field"), [
    (lambda: Rattle(0.0), "Rattle.sigma"), (lambda: Rattle(float("nan")), "Rattle.sigma"),
    (lambda: Rattle(0.1, supercell=1), "Rattle.supercell"),
    (lambda: perturb([], Rattle(0.1), retries=0), "PerturbConfig.retries"),
    (lambda: perturb([], Rattle(0.1), seed=1.5), "PerturbConfig.seed"),
    (lambda: perturb([], ()), "PerturbConfig.perturbations"),
    (lambda: perturb([], (Rattle(0.1), "x")), "PerturbConfig.perturbations"),
    (lambda: PerturbConfig(filter=3), "PerturbConfig.filter"),
])
def test_bad_inputs_name_the_field(call, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        call()


def test_each_child_draws_from_its_own_stream_of_seed_uuid_and_attempt():
    """perturb_with seeds a child's draw from (config seed, child uuid, attempt) only: the
    same rattle, applied by hand with that stream, gives the child's positions bit for bit,
    whatever else is in the batch."""
    config = PerturbConfig((Rattle(0.1), Stretch(0.05, 0.01), Rattle(0.1)), DistanceFilter(0.8),
                           4, 11)
    parents = [cu(), cu(index=1)]
    children, report = perturb_with(parents, config)
    alone, _ = perturb_with(parents[1:], config)
    assert report.n_candidates == 6
    assert len(children) == 6
    assert [c.info["uuid"] for c in children[3:]] == [c.info["uuid"] for c in alone]
    for child, parent in zip(children[::3] + children[2::3], parents + parents):
        rng = rng_for(config.seed, child.info["uuid"], child.info["attempt"])
        expected = Rattle(0.1).apply(parent, rng)
        assert child.positions.tobytes() == expected.positions.tobytes()
    reseeded, _ = perturb_with(parents, dataclasses.replace(config, seed=12))
    assert all(not np.array_equal(a.positions, b.positions) for a, b in zip(children, reseeded))


def test_random_choice_records_the_branch_it_applied():
    hydro, shear = Stretch(0.1, 0.0), Stretch(0.0, 0.1)
    out, _ = perturb([cu()], (RandomChoice(hydro, shear, chance=0.5),) * 40, seed=5)
    applied = [s.info["perturbation_applied"] for s in out]
    assert set(applied) == {hydro.name, shear.name}
    for s in out:  # a hydrostatic-only stretch keeps the cubic cell diagonal
        off_diagonal = s.cell.array[~np.eye(3, dtype=bool)]
        assert (np.abs(off_diagonal).max() < 1e-12) == (s.info["perturbation_applied"]
                                                        == hydro.name)


def test_children_of_a_relaxed_labelled_structure_drop_its_relax_and_label_info():
    """A perturbed child has no label: it must not claim its parent's (label reuse, issue 7)."""
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.stages.relax import VolumeRelax, relax

    parent = stamp_root(bulk("Cu", "fcc", a=3.7, cubic=True), root_uuid(0, "Cu", 3, 225, 0))
    (relaxed,), _ = relax([parent], VolumeRelax(), EMT(), Executor(kind="serial"))
    assert {"label_calculator", "converged", "force_calls"} <= set(relaxed.info)
    children, _ = perturb_with([relaxed], PerturbConfig(Rattle(0.05), seed=1))
    (child,) = children
    assert child.calc is None
    assert not {"label_calculator", "converged", "relax_steps", "force_calls"} & set(child.info)
    assert child.info["parent"] == relaxed.info["uuid"]
