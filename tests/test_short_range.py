"""Short-range stage: isolated atoms, dimers, trimers, compressed crystals; curate keeps them.

Counts, distances and lineage are exact; with EMT the labelled structures pass through curate
although the default caps would drop them (and a distance check that is switched on too), and
the macro's training set contains them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.build import bulk

from pyiron_assyst.calculators import EMT
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.core.lineage import ancestry, stamp_root, uuid_of
from pyiron_assyst.stages.curate import CurationConfig, curate
from pyiron_assyst.stages.filters import DistanceFilter
from pyiron_assyst.stages.label import label
from pyiron_assyst.stages.short_range import (
    KINDS,
    ShortRangeConfig,
    bond_length,
    short_range,
)

SMALL = ShortRangeConfig(dimer_fractions=(0.5, 0.7, 1.0), trimer_fractions=(0.6, 1.0),
                         compressions=(0.7, 0.8))


def _relaxed():
    fcc = stamp_root(bulk("Cu", "fcc", a=3.61), "00000000-0000-0000-0000-000000000001")
    bcc = stamp_root(bulk("Cu", "bcc", a=2.87, cubic=True), "00000000-0000-0000-0000-000000000002")
    return [fcc, bcc]


def _shortest(atoms) -> float:
    d = atoms.get_all_distances(mic=True)
    return float(d[np.triu_indices(len(atoms), 1)].min()) if len(atoms) > 1 else math.inf


def test_config_round_trip_and_validation():
    assert config_from_json(SMALL.to_json()) == SMALL
    assert ShortRangeConfig(dimer_fractions=(1.0, 0.5)).dimer_fractions == (0.5, 1.0)
    for bad in ({"dimer_fractions": (0.1,)}, {"compressions": (1.0,)},
                {"trimer_fractions": (0.5, 0.5)}, {"box": 5.0}, {"enabled": 1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ShortRangeConfig(**bad)


def test_unary_counts_distances_and_lineage():
    relaxed = _relaxed()
    made, report = short_range(relaxed, SMALL, ["Cu"])
    kinds = [a.info["short_range"] for a in made]
    assert kinds == ["isolated"] + ["dimer"] * 3 + ["trimer"] * 2 + ["compressed"] * 4
    assert dict(report.notes) == {"isolated": 1, "dimer": 3, "trimer": 2, "compressed": 4}
    assert (report.n_in, report.n_out, report.drops) == (2, 10, ())
    bond = bond_length("Cu", "Cu")
    assert bond == pytest.approx(2 * 1.32)
    dimers = [a for a in made if a.info["short_range"] == "dimer"]
    assert [_shortest(a) for a in dimers] == pytest.approx([0.5 * bond, 0.7 * bond, bond])
    trimers = [a for a in made if a.info["short_range"] == "trimer"]
    for trimer, f in zip(trimers, (0.6, 1.0)):
        d = trimer.get_all_distances()[np.triu_indices(3, 1)]
        assert d == pytest.approx([f * bond] * 3)
    # clusters sit alone in their boxes: no periodic image within 8 Å
    for atoms in made[:6]:
        assert np.diag(atoms.cell.array) == pytest.approx([12.0, 12.5, 13.0])
        assert "parent" not in atoms.info
        assert atoms.info["root"] == atoms.info["uuid"]
    compressed = made[6:]
    for atoms, (parent, f) in zip(compressed, [(p, f) for p in relaxed for f in (0.7, 0.8)]):
        assert _shortest(atoms) == pytest.approx(f * _shortest(parent))
        assert atoms.get_volume() == pytest.approx(f**3 * parent.get_volume())
        assert atoms.info["parent"] == uuid_of(parent)
        assert atoms.info["root"] == parent.info["root"]
        assert ancestry(atoms) == (uuid_of(parent),)
        assert atoms.info["step"] == "short_range:compressed"
    assert len({uuid_of(a) for a in made}) == len(made)
    again, _ = short_range(relaxed, SMALL, ["Cu"])  # identity is derived, not drawn
    assert [uuid_of(a) for a in again] == [uuid_of(a) for a in made]


def test_binary_pairs_and_triples():
    made, report = short_range([], ShortRangeConfig(compressions=()), ["Ag", "Cu"])
    notes = dict(report.notes)
    n_d, n_t = len(ShortRangeConfig().dimer_fractions), len(ShortRangeConfig().trimer_fractions)
    # pairs CuCu, CuAg, AgAg; triples CuCuCu, CuCuAg, CuAgAg, AgAgAg
    assert notes == {"isolated": 2, "dimer": 3 * n_d, "trimer": 4 * n_t, "compressed": 0}
    mixed = [a for a in made if a.info["short_range"] == "dimer"
             and sorted(a.get_chemical_symbols()) == ["Ag", "Cu"]]
    assert max(_shortest(a) for a in mixed) == pytest.approx(1.5 * bond_length("Cu", "Ag"))


def test_disabled_adds_nothing():
    made, report = short_range(_relaxed(), ShortRangeConfig(enabled=False), ["Cu"])
    assert made == []
    assert report.n_out == 0
    assert dict(report.notes) == dict.fromkeys(KINDS, 0)


def test_curate_keeps_labelled_short_range_structures():
    """EMT labels of a 0.5-bond dimer exceed the default caps; curate keeps them anyway but
    still drops an ordinary structure with the same problem."""
    made, _ = short_range(_relaxed(), SMALL, ["Cu"])
    close = bulk("Cu", "fcc", a=2.4)  # an ordinary structure with pairs at 1.7 Å
    labelled, report = label([*made, stamp_root(close, "00000000-0000-0000-0000-0000000000ff")],
                             EMT(), None)
    assert report.n_out == len(made) + 1
    worst = max(np.linalg.norm(a.calc.results["forces"], axis=1).max() for a in labelled)
    assert worst > 50.0  # the default force cap would drop it
    config = CurationConfig(energy_cap=1.0, force_cap=50.0, distance=DistanceFilter(1.0))
    kept, curated = curate(labelled, config)
    assert [uuid_of(a) for a in kept] == [uuid_of(a) for a in labelled[:-1]]
    assert [d.reason for d in curated.drops] == ["min_distance"]
    assert dict(curated.notes) == {
        "short-range structures exempt from distance and caps": len(made)}


def test_the_reference_isolated_atoms_are_the_short_range_ones_and_cost_nothing_more(tmp_path):
    """With a cache, the isolated-atom reference energies after the labels of the short-range
    structures are cache hits (one DFT calculation per element, not two) with the same
    energies; without the short-range stage's atom they are computed."""
    from pyiron_assyst.execution.cache import ResultCache
    from pyiron_assyst.stages.curate import label_isolated_atoms

    cache = ResultCache(tmp_path / "cache")
    made, _ = short_range(_relaxed(), ShortRangeConfig(dimer_fractions=(1.0,),
                                                       trimer_fractions=(1.0,),
                                                       compressions=()), ["Cu"])
    labelled, _ = label(made, EMT(), cache=cache)
    entries = len(cache.namespace("label").listing()[0])
    assert entries == len(made) == 3
    atoms, _ = label_isolated_atoms(["Cu"], EMT(), cache=cache)
    assert len(cache.namespace("label").listing()[0]) == entries  # answered from the cache
    (short,) = [a for a in labelled if a.info["short_range"] == "isolated"]
    assert atoms[0].get_potential_energy() == short.get_potential_energy()
    assert uuid_of(atoms[0]) == uuid_of(short)
    label_isolated_atoms(["Ag"], EMT(), cache=cache)
    assert len(cache.namespace("label").listing()[0]) == entries + 1
