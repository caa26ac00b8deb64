"""Fit stage (MACE) and transferability report.

Fast tests: configs, the lineage split, the training targets, the final-epoch guard and the
EMT-vs-EMT report (which must be exactly zero everywhere). One tiny fit (a 4-channel MACE model,
36 structures, 2 epochs, ~10 s) runs once per module; the second, identical fit that checks bit
reproducibility and the quick case of ``pyiron-assyst fit`` (a fitted model's report) with
its default arguments (the issue's < 20 meV/atom held-out target, ~2.5 min) are marked slow.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiron_assyst.calculators import EMT, Morse
from pyiron_assyst.calculators.evaluation import evaluate
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.core.lineage import child_uuid, make_child, root_uuid, stamp_root
from pyiron_assyst.fitting.mace import (
    FitConfig,
    FitError,
    MaceModel,
    _final_epoch,
    fit,
    root_of,
    split_by_lineage,
    training_targets,
)
from pyiron_assyst.fitting.transferability import (
    TransferabilityConfig,
    transferability,
    write_report,
)
from tests.support.processes import alive, descendants_running
from tests.support.timing import slack

mace = pytest.importorskip("mace")

TINY = FitConfig(num_channels=4, correlation=1, r_max=4.0, epochs=2, batch_size=8, seed=1,
                 threads=1, valid_fraction=0.2, ema_decay=0.9)
# gates of the quick case (the defaults: one round of active learning), outside the scatter of
# seeds 0-4 measured (docs/fitting.md: the default re-measured with reproducible snapshots; the
# earlier table's values, another draw of the exploration, in brackets)
QUICK_MAE = 20.0  # meV/atom; seeds 0-4: 12.5, 10.9, 12.4, 13.7, 12.1 (12.4, 16.4, 12.3, 14.3, 12.4)
QUICK_FORCES = 0.15  # eV/Å; 0.038, 0.070, 0.057, 0.049, 0.044 (0.037-0.081)
QUICK_FCC_A = 0.015  # relative; +0.0033, +0.0055, -0.0013, -0.0020, +0.0008 (-0.0021-+0.0033)
QUICK_MD_ERROR = 30.0  # meV/atom, largest |E_model - E_ref| of any MD run; 10.9, 25.1 (slab),
# 12.0, 18.9, 10.3 (10.2, 22.1, 8.9, 19.4, 10.3)
QUICK_DIMER = 100.0  # meV/atom at 0.7-1.0 x (issue 19's target); 21, 32, 42, 10, 32 (13-57)
QUICK_TRIMER = 150.0  # meV/atom at 0.7-1.0 x; 20, 30, 99, 14, 21 (16-108)
QUICK_REPORT = TransferabilityConfig(n_volumes=5, vacancy_sites=32, relax_steps=20,
                                     slab_layers=3, md_steps=10, md_snapshots=2,
                                     stability_runs=(("vacancy", 1500.0, 0.04),),
                                     cluster_fractions=(0.7, 1.0))


def _family(phase: str, volume_scale: float, index: int, copies: int = 2) -> list[Atoms]:
    """An EMT-labelled Cu root cell and ``copies`` rattled children of it."""
    atoms = bulk("Cu", phase, a={"fcc": 3.6, "bcc": 2.87, "sc": 2.4, "hcp": 2.55}[phase])
    atoms.set_cell(atoms.cell * volume_scale ** (1 / 3), scale_atoms=True)
    root = stamp_root(atoms, root_uuid(0, "Cu", 3, index, 0))
    family = [root]
    for copy in range(copies):
        child = root.repeat((2, 1, 1))
        child.rattle(0.05, seed=index * 10 + copy)
        family.append(make_child(child, root, "rattle", child_uuid(root.info["uuid"], "rattle",
                                                                   "test", copy)))
    return [evaluate(s, EMT()).value for s in family]


def _families(scales: tuple[float, ...]) -> list[Atoms]:
    structures = []
    for i, (phase, scale) in enumerate((p, s) for p in ("fcc", "bcc", "sc", "hcp")
                                       for s in scales):
        structures += _family(phase, scale, i)
    return structures


@pytest.fixture(scope="module")
def labelled() -> list[Atoms]:
    """12 lineages (4 phases x 3 volumes), 3 structures each."""
    return _families((0.92, 1.0, 1.08))


@pytest.fixture(scope="module")
def tiny_fit(labelled, tmp_path_factory):
    directory = tmp_path_factory.mktemp("fit")
    return fit(labelled, TINY, directory=str(directory)), directory


# --------------------------------------------------------------------------- configs


def test_fit_config_round_trip_and_validation():
    assert config_from_json(TINY.to_json()) == TINY
    assert hash(config_from_json(TINY.to_json())) == hash(TINY)
    for bad in ({"backend": "nequip"}, {"epochs": 0}, {"valid_fraction": 1.0},
                {"device": "tpu"}, {"max_L": 4}, {"r_max": -1.0}):
        with pytest.raises(ConfigError):
            FitConfig(**bad)


def test_device_auto_follows_executor_gpus():
    from pyiron_assyst.execution.executors import Executor

    assert FitConfig().resolved_device(None) == "cpu"
    assert FitConfig().resolved_device(Executor(kind="serial")) == "cpu"
    assert FitConfig().resolved_device(Executor(kind="slurm_cluster", gpus_per_core=1)) == "cuda"
    assert FitConfig(device="cpu").resolved_device(Executor(gpus_per_core=1)) == "cpu"


def test_transferability_config_validation():
    assert config_from_json(QUICK_REPORT.to_json()) == QUICK_REPORT
    for bad, field in (({"elements": ("Xx",)}, "elements"), ({"elements": ("Cu", "Cu")},
                       "elements"), ({"elements": ()}, "elements"),
                       ({"structure": "diamond"}, "structure"),
                       ({"volume_range": (1.1, 1.2)}, "volume_range"),
                       ({"n_volumes": 3}, "n_volumes"), ({"md_snapshots": 300}, "md_snapshots"),
                       ({"stability_runs": (("liquid", 1500, 2),)}, "stability_runs"),
                       ({"stability_runs": (("vacancy", 1500),)}, "stability_runs"),
                       ({"stability_runs": (("vacancy", 1500, -1),)}, "stability_runs"),
                       ({"elastic_strain": 0.1}, "elastic_strain"),
                       ({"formation_tolerance": 0}, "formation_tolerance"),
                       ({"cluster_up_to": 0.5}, "cluster_up_to")):
        with pytest.raises(ConfigError, match=f"TransferabilityConfig.{field} must be"):
            TransferabilityConfig(**bad)


# --------------------------------------------------------------------------- split and data


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=2, max_size=40), st.floats(0.05, 0.9),
       st.integers(0, 5))
def test_split_keeps_lineages_whole_and_ignores_order(families, fraction, seed):
    structures = []
    for i, family in enumerate(families):
        atoms = Atoms("Cu", cell=[2.5] * 3, pbc=True)
        atoms.info.update(uuid=f"{i}", root=f"root{family}")
        structures.append(atoms)
    kept, held = split_by_lineage(structures, fraction, seed)
    assert len(kept) + len(held) == len(structures)
    held_roots, kept_roots = {root_of(s) for s in held}, {root_of(s) for s in kept}
    assert not held_roots & kept_roots
    n_roots = len(held_roots | kept_roots)
    if n_roots >= 2:
        assert 1 <= len(held_roots) <= n_roots - 1
        assert len(held_roots) == min(max(round(fraction * n_roots), 1), n_roots - 1)
    _, held_reversed = split_by_lineage(structures[::-1], fraction, seed)
    assert {root_of(s) for s in held_reversed} == held_roots


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.sampled_from(["Cu", "Ag", "CuAg", "Cu3Ag"]), st.integers(1, 12),
                       min_size=2), st.floats(0.05, 0.6), st.integers(0, 5))
def test_split_holds_out_lineages_of_every_composition(lineages, fraction, seed):
    """Each composition is split on its own: a composition of two or more lineages always has
    one held out (a split over all lineages at once left the quick binary case's 1:1 cells all
    on the training side), none loses all, and its split is the one it gets alone."""
    structures = []
    for formula, n in lineages.items():
        for family in range(n):
            for copy in range(2):
                atoms = Atoms(formula * (copy + 1), cell=[2.5] * 3, pbc=True)
                atoms.info.update(uuid=f"{formula}{family}-{copy}", root=f"{formula}{family}")
                structures.append(atoms)
    _, held = split_by_lineage(structures, fraction, seed)
    for formula, n in lineages.items():
        roots = {root_of(s) for s in held if root_of(s).rstrip("0123456789") == formula}
        expected = 0 if n < 2 else min(max(round(fraction * n), 1), n - 1)
        assert len(roots) == expected, (formula, n)
        alone = [s for s in structures if root_of(s).rstrip("0123456789") == formula]
        assert {root_of(s) for s in split_by_lineage(alone, fraction, seed)[1]} == roots


def test_training_targets_use_free_energy():
    atoms = bulk("Cu", "fcc", a=3.6)
    forces = np.array([[0.1, -0.2, 0.3]])
    stress = np.arange(6.0) * 1e-3
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, free_energy=-1.25, forces=forces,
                                       stress=stress)
    target = training_targets(atoms)
    assert target.calc is None
    assert target.info["REF_energy"] == -1.25
    assert np.array_equal(target.arrays["REF_forces"], forces)
    assert np.array_equal(target.info["REF_stress"], stress)


def test_final_epoch_guard():
    log = "INFO: Loaded Stage one model from epoch 7 for evaluation\n"
    assert _final_epoch(log, 8) == 7
    with pytest.raises(FitError, match="not of the final epoch 9"):
        _final_epoch(log, 10)
    with pytest.raises(FitError):
        _final_epoch("nothing loaded", 3)


def test_unlabelled_only_raises(tmp_path):
    with pytest.raises(FitError, match="no labelled"):
        fit([bulk("Cu")], TINY, directory=str(tmp_path))


# --------------------------------------------------------------------------- the tiny fit


def test_tiny_fit_returns_final_model_usable_as_calculator(tiny_fit, labelled):
    (model, report), directory = tiny_fit
    assert isinstance(model, MaceModel)
    assert config_from_json(model.to_json()) == model
    assert os.path.dirname(model.model_path).startswith(str(directory))
    assert report.final_epoch == TINY.epochs - 1
    assert report.n_train + report.n_valid == len(labelled)
    assert not report.drops
    assert not set(report.train_roots) & set(report.valid_roots)
    assert len(report.valid_roots) == 2  # round(0.2 * 12 lineages)
    checkpoints = sorted(p.name for p in (directory / os.path.basename(
        os.path.dirname(model.model_path)) / "checkpoints").glob("*.pt"))
    assert checkpoints == [f"model_run-{TINY.seed}_epoch-{TINY.epochs - 1}.pt"]
    atoms = labelled[0].copy()
    atoms.calc = model.get_calculator()
    assert math.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (len(atoms), 3)


def test_fit_is_answered_from_its_cache(tiny_fit, labelled):
    (model, _), directory = tiny_fit
    again, report = fit(labelled, TINY, directory=str(directory))
    assert report.cached
    assert again == model


def test_model_hash_ties_config_to_file(tiny_fit, tmp_path):
    (model, _), _ = tiny_fit
    copy = tmp_path / "copy.model"
    copy.write_bytes(Path(model.model_path).read_bytes())
    moved = MaceModel(str(copy), model.sha256)
    assert moved.get_calculator() is not None
    copy.write_bytes(b"changed")
    with pytest.raises(FitError, match="changed"):
        moved.get_calculator()


def test_a_model_is_the_same_model_wherever_its_file_lies(tiny_fit, labelled, tmp_path):
    """A copied model file (another output directory, a moved project) keeps the model's
    identity: the same hash, so the same exploration, snapshot for snapshot (their uuids and
    MD seeds derive from it); another model or, without a content hash, another path is
    another identity."""
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.stages.explore import ExploreConfig, explore

    (model, _), _ = tiny_fit
    copy = tmp_path / "elsewhere" / "model.model"
    copy.parent.mkdir()
    copy.write_bytes(Path(model.model_path).read_bytes())
    moved = MaceModel(str(copy), model.sha256)
    assert moved.config_hash() == model.config_hash()
    assert MaceModel(str(copy), "0" * 64).config_hash() != model.config_hash()
    assert MaceModel(str(copy)).config_hash() != MaceModel(model.model_path).config_hash()
    assert dataclasses.replace(moved, default_dtype="float32").config_hash() != \
        moved.config_hash()
    config = ExploreConfig(temperatures=(600.0,), steps=10, every=5, starts=1, min_atoms=4)
    serial = Executor(kind="serial")
    here, _ = explore(labelled, model, config, serial)
    there, _ = explore(labelled, moved, config, serial)
    assert [a.info["uuid"] for a in there] == [a.info["uuid"] for a in here]
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)


def test_refine_labels_the_models_own_md_and_refits_on_it(tiny_fit, labelled):
    """One round of active learning on the tiny fit: the snapshots of the model's own MD from
    the lowest minimum join the training structures with EMT labels and the lineage of their
    start, and the refit trains on them (a new model)."""
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.fitting.active import refine
    from pyiron_assyst.stages.explore import ExploreConfig

    (model, _), directory = tiny_fit
    config = ExploreConfig(temperatures=(600.0,), steps=10, every=5, starts=1, min_atoms=4)
    serial = Executor(kind="serial")
    new, training, rounds = refine(model, labelled, EMT(), TINY, config, 1, serial, directory)
    added = training[len(labelled):]
    assert training[:len(labelled)] == list(labelled)
    assert len(added) == 2
    assert [r.explore.n_out for r in rounds] == [2]
    assert not rounds[0].label.drops
    lowest = min(labelled, key=lambda a: a.get_potential_energy() / len(a))
    for atoms in added:
        assert atoms.info["step"] == "label"
        assert atoms.info["root"] == lowest.info["root"]
        assert atoms.info["explore_temperature"] == 600.0
        assert len(atoms) >= 4
        assert atoms.get_potential_energy() == pytest.approx(
            evaluate(Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True),
                     EMT()).value.get_potential_energy(), abs=1e-10)
    assert rounds[0].fit.n_train + rounds[0].fit.n_valid == len(labelled) + 2
    assert new.sha256 != model.sha256
    assert not rounds[0].fit.cached
    assert refine(model, labelled, EMT(), TINY, config, 0, serial, directory)[:2] == (
        model, list(labelled))
    lines = rounds[0].summary()
    assert lines[0].startswith("explore: 36 in, 2 out of 2")
    assert "explored" in lines[1]
    # the same round continuing the model for 1 epoch: the same snapshots, a continued fit
    again, more, done = refine(model, labelled, EMT(), TINY, config, 1, serial, directory,
                               continue_epochs=1)
    assert more == training
    assert done[0].fit.continued == model.model_path
    assert done[0].fit.final_epoch == TINY.epochs - 1  # MACE retrains from the start's last
    assert again.sha256 not in (model.sha256, new.sha256)
    with pytest.raises(ConfigError, match="continue_epochs must be None or an integer >= 1"):
        refine(model, labelled, EMT(), TINY, config, 1, serial, directory, continue_epochs=0)


def _rmse_per_atom(model: MaceModel, structures: list[Atoms]) -> float:
    """RMSE of the model's energy per atom against ``info['REF_energy']``, in meV."""
    calc = model.get_calculator()
    errors = []
    for atoms in structures:
        atoms.calc = calc
        errors.append((atoms.get_potential_energy() - atoms.info["REF_energy"]) / len(atoms))
    return 1000 * float(np.sqrt(np.mean(np.square(errors))))


def test_a_continued_fit_starts_from_the_models_function(tiny_fit, labelled):
    """``fit(start=model)`` trains the model further on new data: before its first step MACE
    evaluates exactly the start's function on the new validation side (its checkpoint loaded
    and its neighbour normalisation kept, though the added compressed cells have more
    neighbours), it runs ``epochs`` more epochs and is cached on the start's identity."""
    (model, first), directory = tiny_fit
    dense = _families((0.8,))[:6]  # two more lineages, compressed: denser neighbourhoods
    config = dataclasses.replace(TINY, epochs=2)
    new, report = fit(labelled + dense, config, directory=str(directory), start=model)
    assert report.continued == model.model_path
    assert f"continued {Path(model.model_path).parent.name} for 2 more epochs; final epoch " \
        f"{first.final_epoch + 1};" in report.summary()
    assert report.epochs == 2
    assert first.epochs == TINY.epochs
    assert report.final_epoch == first.final_epoch + config.epochs - 1
    work = Path(new.model_path).parent
    initial = float(re.search(r"Initial: .*RMSE_E_per_atom=\s*([0-9.]+) meV",
                              (work / "train.log").read_text())[1])
    valid = read(work / "valid.xyz", ":")
    assert initial == pytest.approx(_rmse_per_atom(model, valid), abs=0.006)
    assert new.sha256 != model.sha256
    assert fit(labelled + dense, config, directory=str(directory), start=model)[1].cached
    assert fit(labelled + dense, config, directory=str(directory), start=new)[0] != new


def test_a_fit_continues_only_a_model_of_the_same_architecture(tiny_fit, labelled, tmp_path):
    (model, _), _ = tiny_fit
    with pytest.raises(FitError, match="num_channels differ"):
        fit(labelled, dataclasses.replace(TINY, num_channels=8), directory=str(tmp_path),
            start=model)
    foreign = tmp_path / "foreign.model"
    foreign.write_bytes(Path(model.model_path).read_bytes())
    with pytest.raises(FitError, match="not a finished fit"):
        fit(labelled, TINY, directory=str(tmp_path), start=MaceModel(str(foreign)))


@pytest.mark.slow
def test_a_fit_without_a_validation_side_trains_on_everything(labelled, tmp_path):
    """``valid_fraction=0``: MACE refuses a fraction of 0, so the fit validates on the training
    data; every structure is trained on."""
    from dataclasses import replace

    model, report = fit(labelled, replace(TINY, valid_fraction=0.0), directory=str(tmp_path))
    assert (report.n_train, report.n_valid) == (len(labelled), 0)
    assert report.final_epoch == TINY.epochs - 1
    atoms = labelled[0].copy()
    atoms.calc = model.get_calculator()
    assert math.isfinite(atoms.get_potential_energy())


@pytest.mark.slow
def test_seeded_fit_is_bit_reproducible(tiny_fit, labelled, tmp_path):
    import torch

    (model, _), _ = tiny_fit
    again, report = fit(labelled, TINY, directory=str(tmp_path))
    assert not report.cached
    first = torch.load(model.model_path, weights_only=False).state_dict()
    second = torch.load(again.model_path, weights_only=False).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


# --------------------------------------------------------------------------- short range


def _short_range_set():
    """The short-range stage's clusters for Cu, labelled with EMT."""
    from pyiron_assyst.stages.short_range import ShortRangeConfig, short_range

    made, _ = short_range([], ShortRangeConfig(compressions=()), ["Cu"])
    return [evaluate(s, EMT()).value for s in made]


def test_mace_arguments_use_zbl_and_the_isolated_atoms():
    from pyiron_assyst.fitting.mace import _e0s, _mace_arguments

    clusters = _short_range_set()
    e0s, source = _e0s(TINY, clusters)
    assert source == "isolated"
    assert e0s == {"Cu": pytest.approx(3.5101, abs=1e-3)}
    args = _mace_arguments(TINY, "cpu", True, e0s)
    assert args[args.index("--E0s") + 1] == "e0s.json"
    assert "--pair_repulsion" in args
    plain = _mace_arguments(FitConfig(pair_repulsion=False, e0s="average"), "cpu", True, {})
    assert plain[plain.index("--E0s") + 1] == "average"
    assert "--pair_repulsion" not in plain
    # a set without isolated atoms falls back to average, saying why
    e0s, source = _e0s(TINY, [a for a in clusters if len(a) > 1])
    assert (e0s, source) == ({}, "average (no isolated atom of Cu)")
    with pytest.raises(ConfigError, match="e0s"):
        FitConfig(e0s="zero")


def test_cluster_weight_reaches_maces_config_weight_of_clusters_only(labelled):
    clusters = _short_range_set()
    kinds = {a.info["short_range"] for a in clusters}
    assert {"isolated", "dimer", "trimer"} <= kinds
    for atoms in clusters:
        weighted = training_targets(atoms, 4.0)
        anchor = atoms.info["short_range"] in ("isolated", "dimer", "trimer")
        assert weighted.info.get("config_weight") == (4.0 if anchor else None)
        assert "config_weight" not in training_targets(atoms).info
    assert "config_weight" not in training_targets(labelled[0], 4.0).info
    assert FitConfig(cluster_weight=3).cluster_weight == 3.0
    for bad in (0, -1.0, True):
        with pytest.raises(ConfigError, match="cluster_weight"):
            FitConfig(cluster_weight=bad)


def test_cluster_energies_and_forces_are_weighted_apart_as_mace_reads_them(labelled):
    """``cluster_forces_weight``: the clusters' energies get ``cluster_weight`` and their forces
    the other weight, as MACE's own reader turns them into per-structure loss weights; bulk
    structures keep 1 for both. At its default it leaves the config's identity alone."""
    from mace.data.utils import KeySpecification, config_from_atoms

    keys = KeySpecification(info_keys={"energy": "REF_energy"},
                            arrays_keys={"forces": "REF_forces"})

    def weights(atoms, *args):
        read = config_from_atoms(training_targets(atoms, *args), key_specification=keys)
        return read.weight, read.property_weights["energy"], read.property_weights["forces"]

    dimers = [a for a in _short_range_set() if a.info["short_range"] == "dimer"]
    assert dimers
    for atoms in dimers:
        assert weights(atoms, 10.0, 0.5) == (1.0, 10.0, 0.5)
        assert weights(atoms, 3.0) == (3.0, 1.0, 1.0)  # both alike, as before
    assert weights(labelled[0], 10.0, 0.5) == (1.0, 1.0, 1.0)
    assert FitConfig(cluster_forces_weight=2).cluster_forces_weight == 2.0
    assert FitConfig().config_hash() == "f6f8a0584eead952"  # as before the field existed
    assert FitConfig(cluster_weight=3.0).config_hash() == "58170ac097328821"
    assert FitConfig(cluster_forces_weight=1.0) != FitConfig()
    for bad in (0, -2.0, True, "1"):
        with pytest.raises(ConfigError, match="cluster_forces_weight"):
            FitConfig(cluster_forces_weight=bad)


def test_explored_snapshots_are_weighted_apart_as_mace_reads_them(labelled):
    """``explored_weights``: the explore stage's snapshots get their own energy and force
    weights in MACE's reader; crystals and clusters keep theirs. At its default it is not part
    of the config's identity (the hash pinned above)."""
    from mace.data.utils import KeySpecification, config_from_atoms

    keys = KeySpecification(info_keys={"energy": "REF_energy"},
                            arrays_keys={"forces": "REF_forces"})

    def weights(atoms, *args):
        read = config_from_atoms(training_targets(atoms, *args), key_specification=keys)
        return read.weight, read.property_weights["energy"], read.property_weights["forces"]

    snapshot = labelled[1].copy()
    snapshot.calc = labelled[1].calc
    snapshot.info["explore_temperature"] = 1800.0
    assert weights(snapshot, 10.0, 1.0, (2.0, 0.25)) == (1.0, 2.0, 0.25)
    assert weights(snapshot, 10.0, 1.0) == (1.0, 1.0, 1.0)
    assert weights(labelled[1], 10.0, 1.0, (2.0, 0.25)) == (1.0, 1.0, 1.0)
    dimer = next(a for a in _short_range_set() if a.info["short_range"] == "dimer")
    assert weights(dimer, 10.0, 1.0, (2.0, 0.25)) == (1.0, 10.0, 1.0)
    assert FitConfig(explored_weights=(1, 1)).config_hash() == "f6f8a0584eead952"
    assert FitConfig(explored_weights=(1, 0.1)).explored_weights == (1.0, 0.1)
    for bad in ((1.0,), (1.0, -0.1), (True, 1.0), "11"):
        with pytest.raises(ConfigError, match="explored_weights"):
            FitConfig(explored_weights=bad)


def test_split_never_holds_out_isolated_atoms_dimers_or_trimers(labelled):
    clusters = _short_range_set()
    for seed in range(5):
        kept, held = split_by_lineage(clusters + labelled, 0.5, seed)
        assert all(c in kept for c in clusters)
        assert {root_of(s) for s in held} == {root_of(s) for s in split_by_lineage(
            labelled, 0.5, seed)[1]}


@pytest.mark.slow
def test_fit_with_zbl_keeps_the_isolated_atom_and_repels(labelled, tmp_path):
    """A tiny fit on the families plus the short-range clusters: the model's isolated atom is
    EMT's to round-off (E0s from the isolated atom, no neighbour within r_max) and its dimer
    is repulsive below the bond length (ZBL plus the dimers it saw)."""
    from pyiron_assyst.stages.curate import isolated_atom
    from pyiron_assyst.stages.short_range import dimer

    clusters = _short_range_set()
    model, report = fit(labelled + clusters, TINY, directory=str(tmp_path))
    assert report.e0s_source == "isolated"
    assert dict(report.e0s) == {"Cu": pytest.approx(3.5101, abs=1e-3)}
    assert "E0s isolated (Cu 3.51 eV)" in report.summary()
    calc = model.get_calculator()
    atom = isolated_atom("Cu")
    atom.calc = calc
    assert atom.get_potential_energy() == pytest.approx(dict(report.e0s)["Cu"], abs=1e-6)
    energies = []
    for distance in (1.0, 1.5, 2.0, 2.5):
        pair = dimer("Cu", "Cu", distance)
        pair.calc = calc
        energies.append(pair.get_potential_energy())
    assert np.all(np.diff(energies) < 0), energies  # ever more repulsive inwards


# --------------------------------------------------------------------------- the report


def test_report_of_reference_against_itself_is_exact(labelled, tmp_path):
    """EMT against EMT: the same deterministic calculator, so every difference and error is 0."""
    _, held = split_by_lineage(labelled, 0.3, 0)
    result = transferability(EMT(), EMT(), held, QUICK_REPORT)
    table = result.table()
    assert table["difference"].abs().max() == 0.0
    errors = table[table["quantity"].str.contains("MAE|RMSE|max error")]
    assert len(errors) == 3 * 3 + 4 * 2  # MD, held-out, window; E-V RMSE and max per phase
    assert (errors["model"] == 0.0).all()
    # EMT Cu: a = 3.590 Å, B = 133 GPa, vacancy 1.24 eV (ASE's EMT parameters; independent
    # of the quick settings to the digits checked); its ground state is hcp, 0.98 meV/atom
    # below fcc (at c/a 1.632, near the ideal 1.633), so the defects are built on hcp
    assert result.ground_states == {"Cu": "hcp"}
    assert result.value("fcc a").reference == pytest.approx(3.5902, abs=2e-4)
    assert result.value("fcc B").reference == pytest.approx(133.0, abs=1.0)
    assert result.value("E(fcc) - E(hcp)").reference == pytest.approx(0.98, abs=0.02)
    assert result.value("E(bcc) - E(hcp)").reference == pytest.approx(33.61, abs=0.05)
    assert result.value("hcp c/a").reference == pytest.approx(1.6322, abs=2e-4)
    assert result.value("E(sc) - E(hcp)").reference > 300
    assert result.value("vacancy formation (unrelaxed)").reference == pytest.approx(1.24,
                                                                                     abs=0.01)
    assert {r.quantity for r in result.rows} >= {
        "hcp C11", "hcp C12", "hcp C13", "hcp C33", "hcp C44",
        "surface energy (0001, unrelaxed)", "surface energy (10-10, unrelaxed)"}
    paths = write_report(result, tmp_path / "report")
    assert {p.name for p in paths} == {"transferability.csv", "transferability.md",
                                       "ev_curves.png", "parity_energy.png",
                                       "parity_forces.png", "md_traces.png", "clusters.png"}
    # EMT Cu: isolated atom 3.51 eV, cohesive energy 3.518 eV/atom (hcp at -0.008 eV/atom)
    assert result.value("isolated atom energy").reference == pytest.approx(3.5101, abs=1e-3)
    assert result.value("cohesive energy (hcp)").reference == pytest.approx(3.518, abs=2e-3)
    assert result.passed
    assert [c.name for c in result.checks] == [
        "MD vacancy 1500 K: shortest distance", "MD vacancy 1500 K: |E_model - E_ref|",
        "dimer Cu-Cu curve: |E_model - E_ref| 1.78-2.54 Å",
        "trimer Cu-Cu-Cu curve: |E_model - E_ref| 1.78-2.54 Å"]
    assert (tmp_path / "report" / "transferability.md").read_text().startswith(
        "Verdict: **PASS**")
    assert all(p.stat().st_size > 0 for p in paths)


@pytest.mark.slow
def test_quick_case_meets_the_target(tmp_path):
    """``pyiron-assyst fit`` with its default arguments (the quick case: Cu, 1-2 atoms, every
    third space group, the short-range structures, about 530 structures, 20 % of the lineages
    held out; a 16-channel float64 MACE model with correlation 3, 200 epochs, the clusters'
    energies weighted 10 and their forces 1; one round of active learning, the model continued
    40 epochs on its labelled MD snapshots; the report with 16 ps of the model's own MD).

    The gates lie outside the scatter of the seeds 0-4 measured (docs/fitting.md), not at the
    report's limits, which seed 1 misses in its slab's MD (25.1 meV/atom; with another draw of
    the exploration at 2000 K and in its trimer): a fit is reproducible only per machine and
    thread count. The MD must stay intact
    (shortest distance above 0.65 × the nearest neighbours' in every run: measured 1.90-2.17 Å
    against 1.65) and its energy follow the reference; the clusters must not fall back to the
    ~350 meV/atom of before the fit settings were chosen. An untrained model is at ~500
    meV/atom and ~1 eV/Å.
    """
    import pandas as pd

    from pyiron_assyst.cli.fit import main

    out = tmp_path / "quick"
    assert main(["-o", str(out)]) == 0
    table = pd.read_csv(out / "report" / "transferability.csv").set_index("quantity")
    text = table.to_string() + (out / "report" / "transferability.md").read_text()
    window = "held-out within 1 eV/atom"
    held_out = read(out / "held_out.extxyz", index=":")
    per_atom = np.array([a.get_potential_energy() / len(a) for a in held_out])
    in_window = int((per_atom <= per_atom.min() + 1.0).sum())
    assert table.loc["held-out: structures", "model"] == len(held_out), text
    assert table.loc[f"{window}: structures", "model"] == in_window, text
    assert 50 < in_window < len(held_out), text
    assert table.loc[f"{window}: energy MAE", "model"] < QUICK_MAE, text
    assert table.loc[f"{window}: force RMSE", "model"] < QUICK_FORCES, text
    fcc_a = table.loc["fcc a"]
    assert abs(fcc_a["difference"]) < QUICK_FCC_A * fcc_a["reference"], text
    assert table.loc["isolated atom energy", "difference"] == pytest.approx(0.0, abs=1e-6)
    checks = [line.split(" | ") for line in text.splitlines()
              if line.startswith(("| MD ", "| dimer ", "| trimer ")) and "snapshots" not in line]
    runs = [c for c in checks if c[0].startswith("| MD ")]
    assert len(runs) == 2 * 4, text  # 4 runs: vacancy at 600, 1500 (10 ps), 2000 K; slab
    for name, mark, value, *_ in runs:
        if name.endswith("shortest distance"):
            assert mark == "pass", text
        else:
            assert float(value) < QUICK_MD_ERROR, text
    assert "5000/5000 steps" in text  # 10 ps at 1500 K
    clusters = [c for c in checks if not c[0].startswith("| MD ")]
    assert [c[0].split()[1] for c in clusters] == ["dimer", "trimer"], text
    assert float(clusters[0][2]) < QUICK_DIMER, text
    assert float(clusters[1][2]) < QUICK_TRIMER, text
    summary = (out / "summary.txt").read_text()
    assert "final epoch 199" in summary  # the first fit
    assert "for 40 more epochs; final epoch 238" in summary  # MACE retrains its epoch 199
    assert "explore: " in summary
    assert len(read(out / "explored.extxyz", index=":")) == 40


# --------------------------------------------------------------------------- nodes and CLI


def test_split_node(labelled):
    import pyiron_workflow as pwf

    from pyiron_assyst.workflow import nodes as fit_nodes

    run = pwf.node(fit_nodes.split).run(structures=labelled, fraction=0.25, seed=3)
    assert run.exception is None
    kept, held = run.outputs["kept"], run.outputs["held_out"]
    assert len(kept) + len(held) == len(labelled)
    assert not {root_of(s) for s in kept} & {root_of(s) for s in held}


@pytest.mark.slow
def test_transferability_node_writes_report(labelled, tmp_path):
    import pyiron_workflow as pwf

    from pyiron_assyst.workflow import nodes as fit_nodes

    _, held = split_by_lineage(labelled, 0.25, 3)
    run = pwf.node(fit_nodes.transferability).run(model=EMT(), reference=EMT(), held_out=held,
                                                  config=QUICK_REPORT, directory=str(tmp_path))
    assert run.exception is None
    assert (tmp_path / "transferability.md").is_file()


def test_fit_command_rejects_bad_arguments(capsys):
    from pyiron_assyst.cli.fit import main

    assert main(["--group-step", "0", "-o", "unused"]) == 2
    assert "--group-step" in capsys.readouterr().err
    assert main(["--elements", "Cu", "Cu", "-o", "unused"]) == 2
    assert "--elements must be distinct chemical symbols" in capsys.readouterr().err
    assert main(["--md-time", "0", "-o", "unused"]) == 2
    assert "--md-time must be > 0 ps" in capsys.readouterr().err
    assert main(["--explore-rounds", "-1", "-o", "unused"]) == 2
    assert "--explore-rounds must be an integer >= 0" in capsys.readouterr().err
    assert main(["--explore-min-atoms", "0", "-o", "unused"]) == 2
    assert "--explore-min-atoms must be an integer >= 1" in capsys.readouterr().err
    assert main(["--explored-weights", "1", "-0.1", "-o", "unused"]) == 2
    assert "--explored-weights must be two numbers >= 0" in capsys.readouterr().err
    assert main(["--refit-epochs", "0", "-o", "unused"]) == 2
    assert "--refit-epochs must be an integer >= 1" in capsys.readouterr().err
    assert main(["--max-atoms", "0", "-o", "unused"]) == 2
    assert "--max-atoms must be an integer >= 1" in capsys.readouterr().err
    assert not Path("unused").exists()


def test_fit_command_passes_active_learning_settings_to_the_refits_only():
    """``--explore-min-atoms`` reaches the exploration, ``--explored-weights`` the refits; the
    first fit keeps the config (and so the cache entry) of a run without active learning."""
    import argparse

    from pyiron_assyst.cli.fit import _active_learning_configs, add_fit_command, quick_fit_config
    from pyiron_assyst.stages.explore import ExploreConfig

    parser = add_fit_command(argparse.ArgumentParser().add_subparsers())
    config = quick_fit_config(seed=4, threads=2)
    args = parser.parse_args(["--seed", "4", "--threads", "2"])
    assert _active_learning_configs(args, config) == (config, ExploreConfig(threads=2, seed=4))
    args = parser.parse_args(["--seed", "4", "--threads", "2", "--explore-min-atoms",
                              "12", "--explored-weights", "3", "0.1", "--explore-surfaces"])
    refit, explore = _active_learning_configs(args, config)
    assert explore == ExploreConfig(threads=2, seed=4, min_atoms=12, surfaces=True)
    assert refit.explored_weights == (3.0, 0.1)
    assert dataclasses.replace(refit, explored_weights=(1.0, 1.0)) == config


def test_fit_command_takes_several_elements_and_samples_every_composition():
    import argparse

    from pyiron_assyst.cli.fit import add_fit_command, default_max_atoms, formula_grid

    parser = argparse.ArgumentParser()
    add_fit_command(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["fit"]).max_atoms is None  # resolved by the element count:
    assert (default_max_atoms(["Cu"]), default_max_atoms(["Cu", "Ag"])) == (2, 3)
    assert parser.parse_args(["fit", "--elements", "Cu", "Ag"]).elements == ["Cu", "Ag"]
    assert parser.parse_args(["fit", "--element", "Al"]).elements == ["Al"]
    assert parser.parse_args(["fit"]).elements == ["Cu"]
    grid = [{k: v for k, v in f.items() if v} for f in formula_grid(["Cu", "Ag"], 2)]
    assert sorted(grid, key=str) == sorted([{"Cu": 1}, {"Cu": 2}, {"Ag": 1}, {"Ag": 2},
                                            {"Cu": 1, "Ag": 1}], key=str)
    assert [dict(f) for f in formula_grid(["Cu"], 3)] == [{"Cu": 1}, {"Cu": 2}, {"Cu": 3}]


@pytest.mark.slow
def test_fit_command_end_to_end(tmp_path):
    """The whole loop on a minimal case: 1-2 Cu atoms, every 12th group, a 2-epoch fit and one
    round of active learning (explore, label, the model continued for 2 epochs)."""
    import torch

    from pyiron_assyst.cli.fit import main

    out = tmp_path / "run"
    torch.set_num_threads(2)
    assert main(["--group-step", "12", "--epochs", "2", "--channels", "4", "--threads", "1",
                 "--workers", "1", "--md-time", "0.02", "--explore-rounds", "1",
                 "--refit-epochs", "2", "-o", str(out)]) == 0
    for name in ("summary.txt", "training_set.extxyz", "held_out.extxyz", "explored.extxyz",
                 "report/transferability.csv", "report/ev_curves.png"):
        assert (out / name).is_file(), name
    text = (out / "summary.txt").read_text()
    assert "held-out within 1 eV/atom: energy MAE" in text
    assert "final epoch 1" in text
    # one round of active learning: 2 starts x 2 temperatures x 10 snapshots planned
    explored = read(out / "explored.extxyz", index=":")
    training = len(read(out / "training_set.extxyz", index=":"))
    kept = training - len(read(out / "held_out.extxyz", index=":"))
    assert f"explore: {kept} in, {len(explored)} out of 40" in text, text
    assert "(explored snapshots)" in text
    assert all(a.info["explore_temperature"] in (1000.0, 1800.0) for a in explored)
    # starts repeated to at least min_atoms (8), never twice that (supercell_repeat is compact)
    assert all(8 <= len(a) < 16 for a in explored), sorted({len(a) for a in explored})
    # the first fit, then the refit continuing it 2 epochs (MACE retrains its last epoch)
    assert text.count("final epoch 1") == 1
    assert "continued fit_" in text
    assert "for 2 more epochs; final epoch 2" in text
    assert "One fit (seed 0): another seed gives other numbers" in text
    assert torch.get_num_threads() == 1  # the report evaluated with --threads, not every core


@pytest.mark.slow
def test_fit_command_binary_end_to_end(tmp_path):
    """``--elements Cu Ag``: a binary set (every composition of 1-3 atoms, the binary
    default; mixed dimers), a fit, a round of active learning and a binary report with
    formation energies and per-element rows."""
    import pandas as pd

    from pyiron_assyst.cli.fit import main

    out = tmp_path / "binary"
    assert main(["--elements", "Cu", "Ag", "--group-step", "20", "--epochs", "2",
                 "--channels", "4", "--threads", "1", "--workers", "1", "--md-time", "0.02",
                 "--refit-epochs", "2", "-o", str(out)]) == 0
    training = read(out / "training_set.extxyz", index=":")
    formulas = {a.get_chemical_formula(empirical=True) for a in training}
    assert {"Cu", "Ag", "AgCu", "AgCu2", "Ag2Cu"} <= formulas  # three atoms by default
    kinds = {(a.info.get("short_range"), a.get_chemical_formula()) for a in training}
    assert ("dimer", "AgCu") in kinds
    table = pd.read_csv(out / "report" / "transferability.csv").set_index("quantity")
    for quantity in ("Cu fcc a", "Ag fcc a", "formation energy L12 Cu3Ag",
                     "formation energy random fcc Cu50Ag50", "Ag isolated atom energy"):
        assert quantity in table.index, quantity
    assert table.loc["formation energy B2 CuAg", "reference"] == pytest.approx(31.3, abs=1.5)
    text = (out / "summary.txt").read_text()
    assert "formation B2 CuAg: |ΔH_model - ΔH_ref|" in text
    # one round of active learning by default: snapshots labelled, the model continued
    assert "continued fit_" in text
    # up to two minima of each composition, 2 temperatures, 10 snapshots each; the 2-epoch
    # model's MD may collapse in a run (measured: 155 of 160), and then the drops are counted
    kept = len(training) - len(read(out / "held_out.extxyz", index=":"))
    explored = read(out / "explored.extxyz", index=":")
    found = re.search(rf"explore: {kept} in, {len(explored)} out of (\d+)"
                      r"(?:; dropped (\d+) \((?:collapsed|md_stopped))?", text)
    assert found, text
    assert int(found[1]) % 20 == 0
    assert len(explored) + int(found[2] or 0) == int(found[1])
    formulas = {a.get_chemical_formula(empirical=True) for a in explored}
    assert formulas <= {"Cu", "Ag", "AgCu", "AgCu2", "Ag2Cu"}
    assert formulas & {"AgCu", "AgCu2", "Ag2Cu"}  # the alloys are explored too
    assert (out / "report" / "formation_energies.png").is_file()


def test_a_failed_vacancy_relaxation_is_nan_with_its_reason():
    """A potential without a minimum near a vacancy must not print a formation energy."""
    from dataclasses import replace

    from pyiron_assyst.fitting.bulk import Phase
    from pyiron_assyst.fitting.transferability import _vacancy

    def emt(atoms):
        return EMT().calculator_for(atoms)

    fcc = Phase("fcc", 3.5902**3 / 4, math.nan, math.nan)
    unrelaxed, relaxed, note = _vacancy(replace(QUICK_REPORT, relax_steps=300), "Cu", fcc, emt)
    assert note == ""
    assert 0 < relaxed < unrelaxed
    unrelaxed_again, stopped, note = _vacancy(replace(QUICK_REPORT, relax_steps=1), "Cu", fcc,
                                              emt)
    assert unrelaxed_again == unrelaxed
    assert math.isnan(stopped)
    assert note.startswith("relaxation not converged to 0.01 eV/Å in 1 steps")
    # a long-ranged pair potential with its minimum at 1.5 Å, far inside the crystal's 2.54 Å
    short = Morse(epsilon=1.0, r0=1.5, rho0=2.0, rcut1=6.0, rcut2=7.0)
    _, collapsed, note = _vacancy(QUICK_REPORT, "Cu", fcc, short.calculator_for)
    assert math.isnan(collapsed)
    assert note.startswith("relaxation collapsed: closest pair")


_TRAINING = b"pyiron_assyst.fitting._mace_train"


@pytest.mark.slow
def test_sigterm_to_fit_takes_the_training_process_with_it(tmp_path):
    command = [sys.executable, "-m", "pyiron_assyst.cli", "fit", "--max-atoms", "1",
               "--group-step", "20", "--epochs", "500", "--channels", "4", "--threads", "1",
               "--workers", "1", "-o", str(tmp_path / "run")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + slack(200.0)
        training: list[int] = []
        while not training and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            training = descendants_running(proc.pid, _TRAINING)
        assert training, "the fit never started its training process"
        time.sleep(2.0)
        assert all(alive(pid) for pid in training), proc.stderr.read().decode()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=slack(30.0)) == 128 + signal.SIGTERM  # stopped, not killed
        deadline = time.monotonic() + slack(10.0)
        while any(alive(pid) for pid in training) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in training if alive(pid)] == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_naive_set_benchmark_smoke(tmp_path):
    """``benchmarks/bench_naive.py --quick``: both sets of equal size, both through the same
    round of active learning (2 starts x 2 temperatures x 1 snapshot, each counted), every
    category scored for both models, the MD run, and one table row per category."""
    import json

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_naive.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--work",
                           str(tmp_path / "work"), "--json", str(tmp_path / "naive.json")],
                          capture_output=True, text=True, timeout=slack(600.0),
                          env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads((tmp_path / "naive.json").read_text())["runs"]
    assert run["n_naive"] == run["n_train"] > 50
    for name in ("assyst", "naive"):
        for category, size in run["sizes"].items():
            assert size > 0, category
            assert run[name][category]["n"] == size
            assert math.isfinite(run[name][category]["energy_mae"])
        assert run[name]["md"]["time_ps"] == pytest.approx(0.02)
        (explored,), (dropped,) = run[name]["explored"], run[name]["explore_dropped"]
        assert explored + dropped == 4
        assert run[name]["n_final"] == run["n_train"] + explored
        assert run[name]["cached_parts"] == [False, False]  # a first fit and a continued one
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 6 + 1  # header, categories, MD
    assert "1 round(s) of active learning, each continuing the model 1 epochs" in done.stdout
