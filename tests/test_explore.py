"""Explore stage: MD driven by a model from the set's minima, snapshots with lineage and every
planned snapshot accounted for. EMT stands in for the fitted model (cheap and exact)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT as AseEMT
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiron_assyst.calculators import EMT, CalculatorConfig
from pyiron_assyst.calculators.evaluation import evaluate
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.core.lineage import child_uuid, make_child, root_uuid, stamp_root
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.explore import (
    ExploreConfig,
    explore,
    explore_starts,
    slab_of,
    supercell_repeat,
)
from pyiron_assyst.stages.short_range import dimer

SERIAL = Executor(kind="serial")
SHORT = ExploreConfig(temperatures=(800.0,), steps=20, every=10, starts=1, min_atoms=8)


def _labelled(phase: str, a: float, index: int, scale: float = 1.0) -> Atoms:
    atoms = bulk("Cu", phase, a=a * scale)
    stamp_root(atoms, root_uuid(0, "Cu", 3, index, 0))
    return evaluate(atoms, EMT()).value


@pytest.fixture(scope="module")
def pool() -> list[Atoms]:
    """Labelled Cu cells: hcp (EMT's lowest), a barely rattled child of it, fcc (0.3 meV/atom
    above hcp) and bcc; a Cu dimer (short-range), an unlabelled sc cell and a labelled Ag fcc
    cell."""
    hcp = _labelled("hcp", 2.55, 3)
    child = make_child(hcp.copy(), hcp, "rattle", child_uuid(hcp.info["uuid"], "r", "x"))
    child.positions[0] += 0.002
    child = evaluate(child, EMT()).value
    silver = bulk("Ag", "fcc", a=4.09)
    stamp_root(silver, root_uuid(0, "Ag", 3, 5, 0))
    unlabelled = bulk("Cu", "sc", a=2.4)
    stamp_root(unlabelled, root_uuid(0, "Cu", 3, 6, 0))
    return [_labelled("bcc", 2.87, 2), child, hcp, _labelled("fcc", 3.6, 1),
            evaluate(dimer("Cu", "Cu", 1.0), EMT()).value, unlabelled,
            evaluate(silver, EMT()).value]


def _per_atom(atoms: Atoms) -> float:
    return atoms.get_potential_energy() / len(atoms)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(("fields", "field"), [
    ({"temperatures": ()}, "temperatures"), ({"temperatures": (300.0, 300.0)}, "temperatures"),
    ({"temperatures": (-5.0,)}, "temperatures"), ({"steps": 0}, "steps"),
    ({"every": 0}, "every"), ({"every": 600, "steps": 500}, "every"),
    ({"timestep": 0.0}, "timestep"), ({"starts": 0}, "starts"),
    ({"min_distance": 1.0}, "min_distance"), ({"friction": math.nan}, "friction"),
    ({"threads": 0}, "threads"), ({"seed": -1}, "seed"), ({"steps": True}, "steps"),
    ({"surfaces": 1}, "surfaces"), ({"vacuum": 0.0}, "vacuum"), ({"vacuum": 60.0}, "vacuum")])
def test_bad_config_names_its_field(fields, field):
    with pytest.raises(ConfigError, match=f"ExploreConfig.{field}"):
        ExploreConfig(**fields)


def test_config_is_data():
    config = ExploreConfig(temperatures=(900, 1800), seed=3)
    assert config.temperatures == (900.0, 1800.0)  # ints normalised: equal configs hash equal
    assert config == ExploreConfig(temperatures=(900.0, 1800.0), seed=3)
    assert hash(config) == hash(ExploreConfig(temperatures=(900.0, 1800.0), seed=3))
    assert config_from_json(config.to_json()) == config
    assert ExploreConfig().frames == 10
    assert ExploreConfig(steps=99, every=10).frames == 9
    # the surface fields joined later: at their defaults the identity is the one before them
    assert ExploreConfig(surfaces=False, vacuum=8).config_hash() == ExploreConfig().config_hash()
    assert "surfaces" not in ExploreConfig().to_json()
    surfaces = ExploreConfig(surfaces=True, vacuum=6)
    assert config_from_json(surfaces.to_json()) == surfaces
    assert surfaces.config_hash() != ExploreConfig(surfaces=True).config_hash()


# --------------------------------------------------------------------------- starts, cells


def test_starts_are_the_lowest_labelled_periodic_cells_of_distinct_lineages(pool):
    starts = explore_starts(pool, 2)
    # Cu: hcp is lowest; its rattled child, the second lowest, shares its root, so fcc is the
    # second lineage; the dimer, the unlabelled cell and Ag's second lineage (none) are not
    names = [(a.get_chemical_formula(empirical=True), a.info["root"]) for a in starts]
    assert names == [("Cu", pool[2].info["root"]), ("Cu", pool[3].info["root"]),
                     ("Ag", pool[6].info["root"])]
    assert _per_atom(starts[0]) < _per_atom(pool[1]) < _per_atom(starts[1])
    assert [a.info["root"] for a in explore_starts(pool, 1)] == [pool[2].info["root"],
                                                                  pool[6].info["root"]]


@pytest.mark.parametrize(("heights", "n_atoms", "min_atoms", "expected"), [
    ((2.0, 2.0, 2.0), 1, 24, (3, 3, 3)),   # greedy: 27, the first cube above 24
    ((2.0, 2.0, 6.0), 1, 8, (3, 3, 1)),    # the long axis is not repeated
    ((3.0, 3.0, 3.0), 40, 24, (1, 1, 1)),  # already large enough
    ((2.0, 4.0, 4.0), 2, 8, (2, 2, 1))])   # ties go to the fewest repeats: not 3 x 2 x 1
def test_supercell_repeat_on_constructed_cells(heights, n_atoms, min_atoms, expected):
    assert supercell_repeat(np.diag(heights), n_atoms, min_atoms) == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1.0, 8.0), min_size=3, max_size=3), st.integers(1, 8),
       st.integers(1, 80))
def test_supercell_is_large_enough_compact_and_never_over_repeats(heights, n_atoms, min_atoms):
    repeat = supercell_repeat(np.diag(heights), n_atoms, min_atoms)
    assert n_atoms * math.prod(repeat) >= min_atoms
    if min_atoms <= n_atoms:
        assert repeat == (1, 1, 1)
    else:  # one repeat fewer along some axis is too small: the search stopped in time
        assert any(n_atoms * math.prod(repeat) // repeat[i] * (repeat[i] - 1) < min_atoms
                   for i in range(3) if repeat[i] > 1)
    lengths = [r * h for r, h in zip(repeat, heights)]
    if repeat != (1, 1, 1):
        assert max(lengths) - min(lengths) <= max(heights) + 1e-9


# --------------------------------------------------------------------------- the stage


def test_snapshots_are_children_of_their_starts_and_deterministic(pool):
    snaps, report = explore(pool, EMT(), SHORT, SERIAL)
    starts = explore_starts(pool, 1)
    assert report.n_in == len(pool)
    assert report.n_candidates == 2 * 2 == report.n_out
    assert dict(report.notes) == {"starts": 2.0, "runs": 2.0}
    assert [s.info["parent"] for s in snaps] == [starts[0].info["uuid"]] * 2 + \
        [starts[1].info["uuid"]] * 2
    assert all(s.info["root"] == p.info["root"] for s, p in
               zip(snaps, [starts[0]] * 2 + [starts[1]] * 2))
    assert [len(s) for s in snaps] == [8, 8, 8, 8]  # hcp 2 x 2 x 1, fcc (Ag) 2 x 2 x 2
    assert {s.info["step"] for s in snaps} == {"explore"}
    assert {s.info["explore_temperature"] for s in snaps} == {800.0}
    assert len({s.info["uuid"] for s in snaps}) == 4
    assert all(s.calc is None for s in snaps)  # unlabelled: the reference labels them
    again, _ = explore(list(reversed(pool)), EMT(), SHORT, SERIAL)
    same = {s.info["uuid"]: s.positions for s in again}
    assert all(np.array_equal(same[s.info["uuid"]], s.positions) for s in snaps)
    other, _ = explore(pool, EMT(), ExploreConfig(**{**SHORT.__dict__, "seed": 1}), SERIAL)
    assert not np.allclose(other[0].positions, snaps[0].positions)
    assert {s.info["uuid"] for s in other}.isdisjoint(same)


def test_hot_snapshots_move_and_the_thermostat_heats(pool):
    """At 3000 K (far above EMT Cu's melting) the atoms leave the start: the mean displacement
    is far above zero at the first snapshot and grows with time (seeded, so exact per run;
    a thermostat that did not heat would leave the minimum where it is)."""
    config = ExploreConfig(temperatures=(3000.0,), steps=200, every=50, starts=1, min_atoms=8)
    snaps, report = explore(pool[:4], EMT(), config, SERIAL)
    assert report.n_out == 4
    start = explore_starts(pool[:4], 1)[0]
    start = start.repeat(supercell_repeat(start.cell.array, len(start), 8))
    shifts = [np.linalg.norm(s.positions - start.positions, axis=1).mean() for s in snaps]
    assert shifts[0] > 0.05, shifts
    assert shifts[-1] > shifts[0], shifts


def test_a_collapse_drops_that_snapshot_and_the_rest_of_its_run(pool):
    """A limit of 0.99 x the start's shortest distance: the first hot frame crosses it."""
    config = ExploreConfig(temperatures=(2000.0,), steps=40, every=10, starts=1, min_atoms=8,
                           min_distance=0.99)
    snaps, report = explore(pool[3:4], EMT(), config, SERIAL)
    assert snaps == []
    assert report.n_candidates == 4
    assert report.n_out == 0
    assert report.drop_counts() == {"collapsed": 1, "md_stopped": 3}
    assert "collapsed at frame 1: shortest distance" in report.drops[0].detail
    assert all("after: collapsed at frame 1" in d.detail for d in report.drops[1:])
    kept, _ = explore(pool[3:4], EMT(), SHORT, SERIAL)
    assert report.drops[0].uuid == child_uuid(pool[3].info["uuid"], "explore",
                                              f"{config.config_hash()}|"
                                              f"{EMT().config_hash()}|2000.0", 1)
    assert len(kept) == 2


class _Breaks(Calculator):
    """EMT for its first ``calls`` evaluations, then an error (a model that blows up)."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls, self.emt = calls, AseEMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls -= 1
        if self.calls < 0:
            raise RuntimeError("model exploded")
        self.emt.calculate(atoms, ["energy", "forces"], system_changes)
        self.results = dict(self.emt.results)


@dataclass(frozen=True)
class BreaksAfter(CalculatorConfig):
    calls: int = 15

    def get_calculator(self):
        return _Breaks(self.calls)


def test_a_model_that_raises_ends_its_run_with_the_error_recorded(pool):
    config = ExploreConfig(temperatures=(600.0, 900.0), steps=40, every=10, starts=1,
                           min_atoms=8)
    snaps, report = explore(pool[3:4], BreaksAfter(15), config, SERIAL)
    # 15 calls: the first and 10 steps of frame 1 pass (11 calls), frame 2 raises
    assert [s.info["explore_temperature"] for s in snaps] == [600.0, 900.0]
    assert report.drop_counts() == {"calculator_error": 2, "md_stopped": 4}
    assert "model raised at frame 2: RuntimeError: model exploded" in report.drops[0].detail
    assert report.n_out + len(report.drops) == report.n_candidates == 8


def test_the_node_is_the_stage(pool):
    """The explore node (thin) gives the stage's snapshots and report on its two ports."""
    import pyiron_workflow as pwf

    from pyiron_assyst.workflow import nodes

    run = pwf.node(nodes.explore).run(structures=pool, model=EMT(), config=SHORT,
                                      executor=SERIAL)
    snaps, report = explore(pool, EMT(), SHORT, SERIAL)
    assert [s.info["uuid"] for s in run.outputs["structures"]] == [s.info["uuid"] for s in snaps]
    assert all(np.array_equal(a.positions, b.positions)
               for a, b in zip(run.outputs["structures"], snaps))
    assert run.outputs["report"].n_out == report.n_out == 4


def test_a_slab_is_the_cell_with_vacuum_along_the_normal_of_its_first_two_vectors():
    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))  # a skewed (primitive) cell
    atoms.positions += 0.7  # partly outside the cell: the slab wraps them in first
    slab = slab_of(atoms, 8.0)

    def height(cell: np.ndarray) -> float:  # along the normal of the first two vectors
        normal = np.cross(cell[0], cell[1])
        return float(np.dot(cell[2], normal) / np.linalg.norm(normal))

    assert height(slab.cell.array) == pytest.approx(height(atoms.cell.array) + 8.0)
    np.testing.assert_allclose(slab.cell.array[:2], atoms.cell.array[:2])
    np.testing.assert_allclose(slab.positions, atoms.get_positions(wrap=True))
    assert slab.pbc.all()
    # the two surfaces face 8 Å of vacuum: no atom sees an image across it within 8 Å - slack
    normal = np.cross(slab.cell[0], slab.cell[1])
    depth = slab.positions @ (normal / np.linalg.norm(normal))
    assert height(slab.cell.array) - (depth.max() - depth.min()) >= 8.0


def test_surfaces_add_a_slab_run_per_start_and_temperature_and_keep_the_bulk_runs(pool):
    bulk_snaps, _ = explore(pool, EMT(), SHORT, SERIAL)
    config = ExploreConfig(**{**SHORT.__dict__, "surfaces": True})
    snaps, report = explore(pool, EMT(), config, SERIAL)
    assert report.n_candidates == 2 * 2 * 2 == report.n_out
    assert dict(report.notes) == {"starts": 2.0, "runs": 4.0, "surface_runs": 2.0}
    by_uuid = {s.info["uuid"]: s for s in snaps}
    for old in bulk_snaps:  # the bulk snapshots are those of a run without surfaces
        np.testing.assert_array_equal(by_uuid[old.info["uuid"]].positions, old.positions)
    slabs = [s for s in snaps if s.info["uuid"] not in {b.info["uuid"] for b in bulk_snaps}]
    assert len(slabs) == 4
    starts = explore_starts(pool, 1)
    for snap in slabs:
        start = next(a for a in starts if a.info["uuid"] == snap.info["parent"])
        assert snap.info["root"] == start.info["root"]
        assert snap.info["explore_temperature"] == 800.0
        cell = snap.cell.array
        normal = np.cross(cell[0], cell[1])
        assert np.dot(cell[2], normal) / np.linalg.norm(normal) > 8.0  # the vacuum is there
    assert len(by_uuid) == 8
