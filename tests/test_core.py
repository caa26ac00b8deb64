"""Stage report, lineage identities, info keys and calculator configs."""

import pickle

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential

from pyiron_assyst import calculators
from pyiron_assyst.core import lineage
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.core.info_keys import INFO_KEYS, info_table, set_info
from pyiron_assyst.core.report import Drop, StageReport


def test_report_requires_every_candidate_accounted_for():
    with pytest.raises(ConfigError, match="n_candidates"):
        StageReport("x", n_in=3, n_candidates=3, n_out=1, drops=(Drop("u", "filter"),))
    report = StageReport("relax", 3, 3, 1, drops=(Drop("a", "filter"), Drop("b", "timeout")),
                         flagged=(Drop("c", "not_converged"),))
    assert report.drop_counts() == {"filter": 1, "timeout": 1}
    assert [d.uuid for d in report.failures] == ["b"]
    assert "dropped 2 (filter: 1, timeout: 1)" in report.summary()
    assert config_from_json(report.to_json()) == report


def test_identities_are_derived_and_distinct():
    a = lineage.root_uuid(0, "Cu2", 3, 225, 0)
    assert a == lineage.root_uuid(0, "Cu2", 3, 225, 0)
    assert len({a, lineage.root_uuid(1, "Cu2", 3, 225, 0), lineage.root_uuid(0, "Cu2", 3, 225, 1),
                lineage.root_uuid(0, "Cu2", 2, 225, 0)}) == 4
    copies = {lineage.child_uuid(a, "perturb:rattle", "h", c) for c in range(4)}
    assert len(copies) == 4


def test_rng_depends_on_seed_uuid_and_retry_only():
    u = lineage.root_uuid(0, "Cu", 3, 1, 0)
    first = lineage.rng_for(0, u, 0).random(5)
    np.testing.assert_array_equal(first, lineage.rng_for(0, u, 0).random(5))
    assert not np.array_equal(first, lineage.rng_for(0, u, 1).random(5))
    assert not np.array_equal(first, lineage.rng_for(1, u, 0).random(5))


def test_make_child_builds_ancestry_and_ancestors_walk_back():
    root = lineage.stamp_root(bulk("Cu"), lineage.root_uuid(0, "Cu", 3, 225, 0))
    child = lineage.make_child(root.copy(), root, "relax:volume", "c1")
    grandchild = lineage.make_child(child.copy(), child, "perturb:rattle", "g1")
    assert grandchild.info["root"] == root.info["uuid"]
    assert lineage.ancestry(grandchild) == (root.info["uuid"], "c1")
    assert [a.info["step"] for a in lineage.ancestors(grandchild, [grandchild, child, root])] == [
        "sample", "relax:volume"]
    with pytest.raises(KeyError, match="c1"):
        lineage.ancestors(grandchild, [root])
    table = lineage.lineage_table([root, child, grandchild])
    assert list(table["generation"]) == [0, 1, 2]
    assert table["volume_per_atom"][0] == pytest.approx(root.get_volume())


def test_foreign_structures_get_content_identity():
    a, b = bulk("Cu"), bulk("Cu")
    lineage.ensure_identity(a)
    assert a.info["uuid"] == lineage.uuid_of(b)
    b.positions[0, 0] += 1e-9
    assert lineage.uuid_of(b) != a.info["uuid"]


def test_set_info_refuses_undeclared_keys_and_wrong_types():
    atoms = bulk("Cu")
    with pytest.raises(KeyError, match="not declared"):
        set_info(atoms, "my_key", 1)
    with pytest.raises(TypeError):
        set_info(atoms, "relax_steps", True)
    set_info(atoms, "symprec", 1)
    assert atoms.info["symprec"] == 1.0
    assert isinstance(atoms.info["symprec"], float)
    assert {row["name"] for row in info_table()} == set(INFO_KEYS)


def _direct(cls, **kwargs):
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = cls(**kwargs)
    return atoms.get_potential_energy()


@pytest.mark.parametrize(("config", "expected"), [
    (calculators.EMT(), lambda: _direct(EMT)),
    (calculators.Morse(epsilon=0.3, r0=2.8, rho0=4.0),
     lambda: _direct(MorsePotential, epsilon=0.3, r0=2.8, rho0=4.0)),
    (calculators.LennardJones(sigma=2.3, epsilon=0.4),
     lambda: _direct(LennardJones, sigma=2.3, epsilon=0.4, smooth=True)),
    (calculators.AseCalculator("ase.calculators.emt:EMT"), lambda: _direct(EMT)),
])
def test_calculator_configs_build_live_calculators(config, expected):
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = config.get_calculator()
    assert atoms.get_potential_energy() == expected()
    assert config_from_json(config.to_json()) == config
    assert pickle.loads(pickle.dumps(config)) == config
    hash(config)


def test_morse_energy_of_a_dimer_is_exact():
    from ase import Atoms

    config = calculators.Morse(epsilon=0.3, r0=2.8, rho0=4.0)
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.8]])
    dimer.calc = config.get_calculator()
    assert dimer.get_potential_energy() == pytest.approx(-0.3, abs=1e-12)


@pytest.mark.parametrize(("factory", "match"), [
    (lambda: calculators.Morse(epsilon=-1), "Morse.epsilon"),
    (lambda: calculators.Morse(rcut1=3.0, rcut2=2.0), "Morse.rcut1"),
    (lambda: calculators.LennardJones(sigma=0), "LennardJones.sigma"),
    (lambda: calculators.AseCalculator("os:system"), "not allowed"),
    (lambda: calculators.AseCalculator("ase.calculators.emt:Nope"), "cannot import"),
])
def test_bad_calculator_configs_fail_at_construction(factory, match):
    with pytest.raises(ConfigError, match=match):
        factory()


def test_generic_calculator_freezes_kwargs():
    config = calculators.AseCalculator("ase.calculators.lj:LennardJones",
                                       {"sigma": 2.0, "epsilon": 0.1})
    assert config.kwargs == (("epsilon", 0.1), ("sigma", 2.0))
    assert config.get_calculator().parameters["sigma"] == 2.0


def test_a_calculator_says_which_elements_it_cannot_compute():
    from pyiron_assyst.calculators import EMT, Morse
    from pyiron_assyst.calculators.structure_settings import StructureSettings

    with pytest.raises(ConfigError, match=r"EMT cannot compute Fe, Si: it knows Ag, Al, Au, C, "
                                          r"Cu, H, N, Ni, O, Pd, Pt"):
        EMT().check_elements(["Cu", "Fe", "Si"])
    EMT().check_elements(["Cu", "Ag"])
    Morse().check_elements(["Fe"])  # a pair potential computes anything
    with pytest.raises(ConfigError, match="cannot compute Fe"):
        StructureSettings(EMT(), kpoint_density=3.0).check_elements(["Fe"])
