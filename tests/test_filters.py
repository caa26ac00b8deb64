"""Filters: exact boundaries, periodic images, algebra, the filter stage, round trips."""

import functools
import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import primitive_neighbor_list
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiron_assyst.core.config import ConfigError, NotPersistableError, config_from_json
from pyiron_assyst.core.lineage import stamp_root, uuid_of
from pyiron_assyst.stages.filters import (
    AllOf,
    And,
    AnyOf,
    AspectFilter,
    DistanceFilter,
    EnergyFilter,
    Filter,
    ForceFilter,
    FunctionFilter,
    MissingResultError,
    Not,
    Or,
    VolumeFilter,
    apply_filter,
    as_filter,
)

EPS = 1e-9


def always(atoms):
    return True


def never(atoms):
    return False


def has_two_atoms(atoms):
    return len(atoms) == 2


def dimer(distance, a="Cu", b="Cu", pbc=False):
    """Two atoms ``distance`` Å apart along x in a 20 Å box."""
    return Atoms([a, b], positions=[[5.0, 5.0, 5.0], [5.0 + distance, 5.0, 5.0]],
                 cell=[20.0, 20.0, 20.0], pbc=pbc)


def random_cell(rng, n_max=8, skew=0.4, pbc=None):
    n = int(rng.integers(1, n_max + 1))
    cell = np.eye(3) + rng.uniform(-skew, skew, (3, 3))
    cell *= (n * rng.uniform(8, 30) / abs(np.linalg.det(cell))) ** (1 / 3)
    pbc = rng.random(3) < 0.75 if pbc is None else pbc
    return Atoms(rng.choice(["Cu", "Ag", "Au", "Fe"], n), cell=cell, pbc=pbc,
                 scaled_positions=rng.random((n, 3)) * 1.4 - 0.2)


def labelled(energy, forces):
    atoms = dimer(2.5, pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=energy, free_energy=energy - 0.5,
                                       forces=np.asarray(forces, dtype=float))
    return atoms


# --------------------------------------------------------------------------- DistanceFilter


@pytest.mark.parametrize("pbc", [False, True])
def test_distance_boundary_is_strict(pbc):
    f = DistanceFilter({"Cu": 1.0, "Ag": 1.5})
    assert f(dimer(2.0 + EPS, pbc=pbc))
    assert not f(dimer(2.0 - EPS, pbc=pbc))
    assert f(dimer(2.5 + EPS, "Cu", "Ag", pbc))
    assert not f(dimer(2.5 - EPS, "Ag", "Cu", pbc))
    assert not f(dimer(3.0 - EPS, "Ag", "Ag", pbc))


@pytest.mark.parametrize("edge", [1.0, 2.3, 3.7])
def test_distance_one_atom_cell_sees_its_own_image(edge):
    atoms = Atoms("Cu", cell=[edge] * 3, pbc=True)
    assert DistanceFilter(edge / 2)(atoms)
    assert DistanceFilter(edge / 2 - EPS)(atoms)
    assert not DistanceFilter(edge / 2 + EPS)(atoms)
    atoms.pbc = False
    assert DistanceFilter(edge)(atoms)


def test_distance_uses_minimum_image_across_the_boundary():
    atoms = Atoms("Cu2", positions=[[0.5, 1, 1], [9.0, 1, 1]], cell=[10.0, 10.0, 10.0], pbc=True)
    f = DistanceFilter(0.75)  # the image pair is 1.5 Å apart, the direct one 8.5 Å
    assert f(atoms)
    assert DistanceFilter(0.75 - EPS)(atoms)
    assert not DistanceFilter(0.75 + EPS)(atoms)
    atoms.pbc = (False, True, True)
    assert DistanceFilter(4.25)(atoms)
    assert not DistanceFilter(4.25 + EPS)(atoms)


def test_distance_sees_images_in_flat_skewed_cells():
    # both in-plane lattice vectors are long, but a + b is short
    atoms = Atoms("Cu", cell=[[6.0, 0, 0], [-5.5, 1.0, 0], [0, 0, 8.0]], pbc=True)
    n = np.arange(-8, 9)
    grid = np.stack(np.meshgrid(n, n, n, indexing="ij"), -1).reshape(-1, 3)
    lengths = np.linalg.norm(grid[grid.any(axis=1)] @ atoms.cell.array, axis=1)
    shortest = lengths.min()
    assert shortest < 1.2
    assert DistanceFilter(shortest / 2 - EPS)(atoms)
    assert not DistanceFilter(shortest / 2 + EPS)(atoms)


def test_elements_without_radius_are_not_checked():
    f = DistanceFilter({"Cu": 1.0})
    assert f(dimer(0.1, "Cu", "Fe"))
    assert f(dimer(0.1, "Fe", "Fe"))
    assert not f(dimer(0.1, "Cu", "Cu"))
    assert f.radius("Cu") == 1.0
    assert f.radius("Fe") is None
    assert DistanceFilter(0.3).radius("Fe") == 0.3


def test_distance_single_radius_applies_to_every_element():
    f = DistanceFilter(1.2)
    assert not f(dimer(2.4 - EPS, "H", "U"))
    assert f(dimer(2.4 + EPS, "H", "U"))
    assert DistanceFilter(0.0)(dimer(0.0))


def test_distance_checks_large_structures_with_the_binned_search():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((6, 6, 6))  # 864 atoms
    nearest = 3.6 / np.sqrt(2)
    assert DistanceFilter(nearest / 2 - EPS)(atoms)
    assert not DistanceFilter(nearest / 2 + 1e-6)(atoms)
    atoms.positions[5] = atoms.positions[7] + [0.3, 0, 0]
    assert not DistanceFilter(0.2)(atoms)


def test_distance_rejects_degenerate_periodic_cells():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]],
                  pbc=True)
    with pytest.raises(ValueError, match="degenerate"):
        DistanceFilter(0.5)(atoms)
    kept, report = apply_filter([atoms], DistanceFilter(0.5))
    assert kept == []
    assert report.drops[0].reason == "filter_error"


def _ase_verdict(atoms, radii):
    r = np.array([radii.get(s, np.nan) for s in atoms.get_chemical_symbols()])
    checked = ~np.isnan(r)
    if not checked.any():
        return True
    pairs = primitive_neighbor_list("i", atoms.pbc, atoms.cell, atoms.positions[checked],
                                    r[checked])
    return len(pairs) == 0


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), skew=st.sampled_from([0.1, 0.4, 0.8]))
def test_distance_agrees_with_ase_neighbor_list(seed, skew):
    radii = {"Cu": 1.1, "Ag": 1.25, "Au": 0.9}
    atoms = random_cell(np.random.default_rng(seed), skew=skew)
    assert DistanceFilter(radii)(atoms) == _ase_verdict(atoms, radii)


def test_distance_agrees_with_reference_implementation():
    from assyst.filters import DistanceFilter as Reference

    radii = {"Cu": 1.1, "Ag": 1.25, "Au": 1.2}
    rng = np.random.default_rng(7)
    cells = [random_cell(rng, pbc=True) for _ in range(60)]
    for atoms in cells:
        atoms.symbols[atoms.symbols == "Fe"] = "Cu"
    assert [DistanceFilter(radii)(a) for a in cells] == [Reference(radii)(a) for a in cells]


def test_distance_radii_are_frozen_and_validated():
    a = DistanceFilter({"Cu": 1, "Ag": 1.5})
    assert a.radii == (("Ag", 1.5), ("Cu", 1.0))
    assert a == DistanceFilter({"Ag": 1.5, "Cu": 1.0}) == DistanceFilter((("Cu", 1.0), ("Ag", 1.5)))
    assert hash(a) == hash(DistanceFilter({"Ag": 1.5, "Cu": 1.0}))
    assert DistanceFilter(1).radii == 1.0
    for bad in (-0.1, float("nan"), float("inf"), "1.0", {}, {"Xx": 1.0}, {"Cu": -1.0},
                {"Cu": float("nan")}, True):
        with pytest.raises(ConfigError, match=r"DistanceFilter\.radii"):
            DistanceFilter(bad)


def test_numbers_are_normalised_so_equal_configs_hash_equal():
    for a, b in ((VolumeFilter(1, 2), VolumeFilter(1.0, np.float32(2.0))),
                 (AspectFilter(6), AspectFilter(6.0)), (ForceFilter(np.int64(3)), ForceFilter(3.0)),
                 (EnergyFilter(-1, 0), EnergyFilter(-1.0, 0.0)),
                 (DistanceFilter({"Cu": np.float32(1)}), DistanceFilter({"Cu": 1.0}))):
        assert a == b
        assert a.to_json() == b.to_json()
        assert a.config_hash() == b.config_hash()


def test_distance_tol_matrix_holds_pair_sums():
    tol = DistanceFilter({"Cu": 1.0, "Ag": 1.5}).to_tol_matrix()
    assert tol.get_tol(29, 47) == pytest.approx(2.5)
    assert tol.get_tol(47, 47) == pytest.approx(3.0)
    assert tol.get_tol(29, 29) == pytest.approx(2.0)
    assert DistanceFilter(0.9).to_tol_matrix().get_tol(1, 92) == pytest.approx(1.8)


def test_distance_filter_verdicts_equal_the_reference():
    """Same verdict as assyst 1.0.0 on 300 random cells (speed is measured in benchmarks/)."""
    from assyst.filters import DistanceFilter as Reference

    radii = {"Cu": 1.1, "Ag": 1.25, "Au": 1.2}
    rng = np.random.default_rng(5)
    cells = [random_cell(rng, n_max=10, pbc=True) for _ in range(300)]
    for atoms in cells:
        atoms.symbols[atoms.symbols == "Fe"] = "Ag"
    ours, reference = DistanceFilter(radii), Reference(radii)
    verdicts = [ours(a) for a in cells]
    assert verdicts == [reference(a) for a in cells]
    assert 0 < sum(verdicts) < len(cells)  # both outcomes occur


# --------------------------------------------------------------------------- cell filters


def test_aspect_filter_exact_and_only_periodic_directions():
    f = AspectFilter(6.0)
    assert f(Atoms("Cu", cell=[1.0, 2.0, 6.0], pbc=True))
    assert not f(Atoms("Cu", cell=[1.0, 2.0, 6.0 + EPS], pbc=True))
    slab = Atoms("Cu", cell=[3.0, 3.5, 60.0], pbc=(True, True, False))
    assert f(slab)
    assert not AspectFilter(1.1)(slab)
    assert f(Atoms("Cu", cell=[1.0, 50.0, 60.0], pbc=(True, False, False)))
    assert f(Atoms("Cu", cell=[0.0, 0.0, 0.0], pbc=False))
    assert not f(Atoms("Cu", cell=[0.0, 2.0, 2.0], pbc=True))
    assert f.name == "aspect(<=6)"
    with pytest.raises(ConfigError, match=r"AspectFilter\.maximum_aspect_ratio"):
        AspectFilter(0.5)


def test_volume_filter_exact_per_atom():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[2.0, 2.0, 4.0], pbc=True)
    assert VolumeFilter(8.0, 8.0)(atoms)  # 16 Å³ / 2 atoms
    assert not VolumeFilter(8.0 + 1e-9)(atoms)
    assert not VolumeFilter(maximum=8.0 - 1e-9)(atoms)
    assert VolumeFilter()(atoms)
    assert VolumeFilter(100.0)(Atoms("Cu2", cell=[2.0, 2.0, 4.0], pbc=(True, True, False)))
    assert VolumeFilter(8, 9).name == "volume[8, 9]"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"minimum": -1.0}, "minimum"), ({"minimum": 5.0, "maximum": 4.0}, "maximum"),
    ({"minimum": float("nan")}, "minimum"), ({"maximum": float("nan")}, "maximum"),
])
def test_volume_filter_validates(kwargs, field):
    with pytest.raises(ConfigError, match=rf"VolumeFilter\.{field}"):
        VolumeFilter(**kwargs)


# --------------------------------------------------------------------------- result filters


def test_energy_filter_exact_per_atom():
    atoms = labelled(-4.0, [[0, 0, 0], [0, 0, 0]])  # -2 eV/atom
    assert EnergyFilter(-2.0, -2.0)(atoms)
    assert not EnergyFilter(maximum=-2.0 - 1e-9)(atoms)
    assert not EnergyFilter(minimum=-2.0 + 1e-9)(atoms)
    assert EnergyFilter(-2.25, -2.25, quantity="free_energy")(atoms)
    assert EnergyFilter(-3, 0).name == "energy[-3, 0]"


def test_force_filter_exact():
    atoms = labelled(0.0, [[0.0, 0.0, 3.0], [4.0, 0.0, 3.0]])  # largest |F| = 5 eV/Å
    assert ForceFilter(5.0)(atoms)
    assert not ForceFilter(5.0 - 1e-9)(atoms)
    assert ForceFilter(5.0).name == "force(<=5)"
    with pytest.raises(ConfigError, match=r"ForceFilter\.maximum"):
        ForceFilter(-1.0)


def test_result_filters_read_stored_emt_results_only():
    atoms = bulk("Cu", a=3.6, cubic=True)
    atoms.calc = EMT()
    energy = atoms.get_potential_energy() / len(atoms)
    assert EnergyFilter(energy, energy)(atoms)
    assert ForceFilter(1e-8)(atoms)
    atoms.positions[0] += 0.1  # the stored results are now stale
    with pytest.raises(MissingResultError, match="energy"):
        EnergyFilter()(atoms)
    assert atoms.calc.results  # the filter did not reset the calculator


@pytest.mark.parametrize(("cls", "kwargs"), [(EnergyFilter, {}), (ForceFilter, {"maximum": 1.0})])
def test_missing_results(cls, kwargs):
    atoms = dimer(2.5)
    assert cls(**kwargs, missing="keep")(atoms)
    assert not cls(**kwargs, missing="drop")(atoms)
    with pytest.raises(MissingResultError):
        cls(**kwargs)(atoms)
    kept, report = apply_filter([atoms], cls(**kwargs))
    assert kept == []
    assert report.drop_counts() == {"filter_error": 1}
    assert "no " in report.drops[0].detail
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.missing"):
        cls(**kwargs, missing="ignore")


def test_energy_filter_validates():
    with pytest.raises(ConfigError, match=r"EnergyFilter\.maximum"):
        EnergyFilter(0.0, -1.0)
    with pytest.raises(ConfigError, match=r"EnergyFilter\.quantity"):
        EnergyFilter(quantity="enthalpy")


# --------------------------------------------------------------------------- algebra


@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("right", [True, False])
def test_filter_algebra_truth_tables(left, right):
    a = FunctionFilter(always if left else never)
    b = FunctionFilter(always if right else never)
    atoms = dimer(2.0)
    assert (a & b)(atoms) is (left and right)
    assert (a | b)(atoms) is (left or right)
    assert (~a)(atoms) is (not left)
    assert (~(a & b))(atoms) is (not (left and right))
    assert ((~a | b) & (a | ~b))(atoms) is (left == right)
    plain = always if right else never  # a plain callable on either side
    assert (a & plain)(atoms) is (plain & a)(atoms) is (left and right)
    assert (a | plain)(atoms) is (plain | a)(atoms) is (left or right)


def test_algebra_builds_flat_nested_configs():
    a, b, c = DistanceFilter(1.0), VolumeFilter(5.0), AspectFilter(4.0)
    assert a & b & c == AllOf((a, b, c))
    assert (a | b) | c == AnyOf((a, b, c))
    assert (a & b) | c == AnyOf((AllOf((a, b)), c))
    assert ~~a == a
    assert ~a == Not(a)
    assert And is AllOf
    assert Or is AnyOf
    assert isinstance(a & always, AllOf)
    assert (a & always).filters[1] == FunctionFilter(always)
    assert (a & b | ~c).name == "((distance(1) & volume[5, inf]) | ~aspect(<=4))"
    with pytest.raises(ConfigError, match=r"AllOf\.filters"):
        AllOf(())
    with pytest.raises(ConfigError, match=r"AnyOf\.filters"):
        AnyOf((a, 3))
    with pytest.raises(ConfigError, match=r"Not\.filter"):
        Not("x")


def test_filters_work_with_builtin_filter():
    structures = [dimer(d) for d in (0.5, 1.5, 2.5, 3.5)]
    kept = list(filter(DistanceFilter(1.0), structures))
    assert kept == structures[2:]
    kept = list(filter(DistanceFilter(0.5) & ~DistanceFilter(1.5), structures))
    assert kept == structures[1:3]


def test_rejected_by_names_the_first_failing_subfilter():
    f = VolumeFilter(1.0) & DistanceFilter(1.0) & AspectFilter(6.0)
    assert f.rejected_by(dimer(1.0, pbc=True)) == "distance(1)"
    assert f.rejected_by(dimer(3.0, pbc=True)) is None
    either = DistanceFilter(1.0) | DistanceFilter({"Ag": 0.4})
    assert either.rejected_by(dimer(1.0)) is None
    assert either.rejected_by(dimer(0.5, "Ag", "Ag")) == either.name


# --------------------------------------------------------------------------- the stage


def test_apply_filter_keeps_same_objects_and_reports_drops():
    structures = [stamp_root(dimer(d), f"00000000-0000-0000-0000-00000000000{i}")
                  for i, d in enumerate((0.5, 2.5, 1.0, 3.0))]
    before = [s.copy() for s in structures]
    kept, report = apply_filter(structures, VolumeFilter(100.0, 9000.0) & DistanceFilter(1.0),
                                stage="final_filter")
    assert kept[0] is structures[1]
    assert kept[1] is structures[3]
    assert report.stage == "final_filter"
    assert (report.n_in, report.n_candidates, report.n_out) == (4, 4, 2)
    assert [(d.uuid, d.reason, d.detail) for d in report.drops] == [
        (uuid_of(structures[0]), "filter", "distance(1)"),
        (uuid_of(structures[2]), "filter", "distance(1)"),
    ]
    assert report.wall_time >= 0
    assert all(s == b and s.info == b.info for s, b in zip(structures, before))


def test_apply_filter_none_callables_and_errors():
    structures = [dimer(1.0), Atoms(), dimer(3.0)]
    kept, report = apply_filter(structures, None)
    assert kept == structures
    assert report.drops == ()
    kept, report = apply_filter(structures, lambda a: len(a) == 2)
    assert kept == [structures[0], structures[2]]
    assert report.drops[0].detail == "<lambda>"

    def explode(atoms):
        if len(atoms) == 0:
            raise RuntimeError("boom")
        return True

    kept, report = apply_filter(structures, explode)
    assert kept == [structures[0], structures[2]]
    assert report.drops[0].reason == "filter_error"
    assert "boom" in report.drops[0].detail


# --------------------------------------------------------------------------- persistence


NESTED = (
    (DistanceFilter({"Cu": 1.1, "Ag": 1.3}) & VolumeFilter(5.0, 40.0))
    | ~(AspectFilter(3.0) | EnergyFilter(-5.0, 0.0, missing="keep"))
    | (ForceFilter(10.0, missing="drop") & FunctionFilter(has_two_atoms))
)


@pytest.mark.parametrize("config", [
    DistanceFilter(1.0), DistanceFilter({"Cu": 1.0}), AspectFilter(), VolumeFilter(),
    VolumeFilter(2.0, 30.0), EnergyFilter(quantity="free_energy"), ForceFilter(5.0), NESTED,
    Not(DistanceFilter(0.8)), FunctionFilter(always),
])
def test_filters_round_trip_hash_and_pickle(config):
    assert config.persistable
    loaded = config_from_json(config.to_json())
    assert loaded == config
    assert hash(loaded) == hash(config)
    assert loaded.config_hash() == config.config_hash()
    assert pickle.loads(pickle.dumps(config)) == config
    atoms = labelled(-4.0, [[0.0, 0.0, 3.0], [4.0, 0.0, 3.0]])
    assert loaded(atoms) == config(atoms)


def test_config_hash_tells_filters_apart():
    hashes = {f.config_hash() for f in (DistanceFilter(1.0), DistanceFilter(1.1),
                                        DistanceFilter({"Cu": 1.0}), VolumeFilter(1.0),
                                        VolumeFilter(maximum=1.0), NESTED)}
    assert len(hashes) == 6


def test_function_filters_work_live_but_locals_are_not_persistable():
    threshold = 2

    def local(atoms):
        return len(atoms) >= threshold

    for func, name in ((lambda a: True, "<lambda>"), (local, "local"),
                       (functools.partial(has_two_atoms), "partial(has_two_atoms)")):
        f = as_filter(func)
        assert isinstance(f, FunctionFilter)
        assert f.name == name
        assert f(dimer(1.0))
        assert not f.persistable
        with pytest.raises(NotPersistableError):
            f.to_json()
    assert as_filter(FunctionFilter(always)) == FunctionFilter(always)
    assert FunctionFilter(always).name == "always"
    with pytest.raises(ConfigError, match=r"as_filter\.value"):
        as_filter(3)
    with pytest.raises(ConfigError, match=r"FunctionFilter\.func"):
        FunctionFilter(None)
    assert isinstance(VolumeFilter(), Filter)
