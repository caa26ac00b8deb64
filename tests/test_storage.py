"""Persistence: columnar structure sets, HDF5 stage files, the project directory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pyiron_assyst import calculators
from pyiron_assyst.core import lineage
from pyiron_assyst.core.config import Config
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.storage import (
    Project,
    StorageError,
    StorageWarning,
    columns_to_structures,
    structures_to_columns,
)
from pyiron_assyst.storage.hdf5 import read_table, write_table

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers


def digest(structures: list[Atoms]) -> str:
    """sha256 over every stored bit of a structure set (arrays as bytes, scalars by repr)."""
    h = hashlib.sha256()
    for a in structures:
        for name in sorted(a.arrays):
            h.update(f"{name}:{a.arrays[name].dtype}:{a.arrays[name].shape}".encode())
            h.update(np.ascontiguousarray(a.arrays[name]).tobytes())
        h.update(a.cell.array.tobytes() + a.pbc.tobytes())
        h.update(repr(sorted((k, type(v).__name__, repr(v)) for k, v in a.info.items())).encode())
        h.update(type(a.calc).__name__.encode())
        for key, value in sorted(getattr(a.calc, "results", {}).items()):
            h.update(f"{key}:{type(value).__name__}".encode())
            h.update(np.asarray(value, dtype=float).tobytes())
    return h.hexdigest()


def _label(atoms: Atoms, rng: np.random.Generator, keys: tuple[str, ...]) -> Atoms:
    values = {"energy": float(rng.normal()), "free_energy": float(rng.normal()),
              "forces": rng.normal(size=(len(atoms), 3)), "stress": rng.normal(size=6) * 1e-3}
    atoms.calc = SinglePointCalculator(atoms, **{k: values[k] for k in keys})
    return atoms


def _run_structures() -> dict[str, list[Atoms]]:
    """Three stages with lineage: sampled roots, relaxed children, perturbed grandchildren.

    Mixed sizes (1-16 atoms), bulk, a molecule (no pbc), a slab (pbc T T F), labelled,
    partly labelled and unlabelled structures, all info types, an extra per-atom array.
    """
    rng = np.random.default_rng(7)
    roots = [bulk("Cu", "fcc", a=3.6), bulk("NaCl", "rocksalt", a=5.6, cubic=True),
             molecule("H2O"), bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 1))]
    roots[3].pbc = (True, True, False)
    sample = []
    for i, atoms in enumerate(roots):
        atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
        lineage.stamp_root(atoms, lineage.root_uuid(0, atoms.get_chemical_formula(), 3, 1, i))
        set_info(atoms, "formula", atoms.get_chemical_formula())
        set_info(atoms, "dim", 3 if all(atoms.pbc) else 0)
        set_info(atoms, "symprec", 1e-3)
        atoms.info["note"] = f"user note {i} ✓"  # undeclared but scalar: stored
        sample.append(atoms)
    relax = []
    for parent in sample:
        child = parent.copy()
        child.positions *= 1.01
        lineage.make_child(child, parent, "relax:volume",
                           lineage.child_uuid(parent.info["uuid"], "relax:volume", "h1", 0))
        set_info(child, "converged", bool(len(child) % 2))
        set_info(child, "relax_steps", 3 * len(child))
        relax.append(_label(child, rng, ("energy", "free_energy", "forces", "stress")))
    perturb = []
    label_sets = [("energy", "free_energy", "forces", "stress"), ("energy",), ()]
    for parent in relax:
        for copy in range(3):
            child = parent.copy()
            child.calc = None
            child.rattle(0.05, seed=copy)
            lineage.make_child(child, parent, "perturb:rattle",
                               lineage.child_uuid(parent.info["uuid"], "perturb:rattle", "h2",
                                                  copy))
            if copy == 1:
                child.set_initial_magnetic_moments(rng.normal(size=len(child)))
            perturb.append(_label(child, rng, label_sets[copy]) if label_sets[copy] else child)
    return {"sample": sample, "relax:volume": relax, "perturb": perturb}


def _reports(stages: dict[str, list[Atoms]]) -> dict[str, StageReport]:
    drops = (Drop("u-1", "incompatible_group", "group 230 for Cu1"),
             Drop("u-2", "calculator_error", "RuntimeError: boom"))
    return {name: StageReport(name, n_in=4, n_candidates=len(s) + 2, n_out=len(s), drops=drops,
                              wall_time=1.5, calculator_time=0.25, force_calls=7)
            for name, s in stages.items()}


CONFIGS = {"calculator": calculators.Morse(epsilon=0.5), "emt": calculators.EMT(),
           "executor": Executor(kind="serial")}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Project, dict[str, list[Atoms]]]:
    stages = _run_structures()
    project = Project(tmp_path_factory.mktemp("proj") / "p")
    project.save_run("run", recipe_json='{"nodes": {}}', configs=CONFIGS, stages=stages,
                     reports=_reports(stages), timings={"total": 3.0})
    return project, stages


def _python(code: str, *args: str, env: dict[str, str] | None = None,
            cwd: Path = ROOT) -> str:
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=60, cwd=cwd)
    assert run.returncode == 0, run.stderr
    return run.stdout


# ---------------------------------------------------------------- columns


def test_columns_round_trip_is_bit_identical():
    stages = _run_structures()
    structures = [s for stage in stages.values() for s in stage]
    columns = structures_to_columns(structures)
    assert len(columns["length"]) == 20
    assert columns["skipped_keys"].size == 0
    assert columns["numbers"].dtype == np.int64
    assert columns["positions"].shape == (140, 3)
    back = columns_to_structures(columns)
    assert digest(back) == digest(structures)
    for a, b in zip(structures, back):
        assert np.array_equal(a.positions, b.positions)
        assert a.info == b.info
        assert (a.calc is None) == (b.calc is None)
    water, slab = back[2], back[3]
    assert not water.pbc.any()
    assert np.array_equal(slab.pbc, [True, True, False])
    unlabelled, energy_only = back[8 + 2], back[8 + 1]  # perturbed copies 2 and 1 of Cu
    assert unlabelled.calc is None
    assert set(energy_only.calc.results) == {"energy"}
    assert np.array_equal(back[12].get_initial_magnetic_moments(),
                          structures[12].get_initial_magnetic_moments())
    assert "initial_magmoms" not in back[11].arrays


def test_reloaded_labels_are_usable_single_points():
    relaxed = _run_structures()["relax:volume"]
    back = columns_to_structures(structures_to_columns(relaxed))
    for a, b in zip(relaxed, back):
        assert isinstance(b.calc, SinglePointCalculator)
        assert b.get_potential_energy() == a.calc.results["energy"]
        assert b.get_potential_energy(force_consistent=True) == a.calc.results["free_energy"]
        assert np.array_equal(b.get_forces(), a.calc.results["forces"])
        assert np.array_equal(b.get_stress(), a.calc.results["stress"])
    back[0].positions += 0.1  # the label belongs to the stored geometry only
    with pytest.raises(Exception, match="not available"):
        back[0].get_potential_energy()


def test_reloaded_calculator_is_a_proper_single_point_calculator():
    atoms = bulk("Cu", cubic=True)
    results = {"energy": -1.5, "forces": np.ones((4, 3))}
    reference = SinglePointCalculator(atoms, **results)
    atoms.calc = SinglePointCalculator(atoms, **results)
    first, second = columns_to_structures(structures_to_columns([atoms, atoms]))
    for back in (first, second):
        assert vars(back.calc).keys() == vars(reference).keys()
        for key, value in vars(back.calc).items():
            assert getattr(value, "__self__", back.calc) is back.calc, key  # bound to itself
        assert back.calc.atoms is not back
        assert back.calc.atoms == atoms
    assert first.calc.results["forces"] is not second.calc.results["forces"]
    assert first.calc.parameters is not second.calc.parameters


def test_full_stress_matrix_is_stored_as_voigt():
    atoms = bulk("Cu")
    atoms.calc = SinglePointCalculator(atoms, stress=np.diag([1.0, 2.0, 3.0]))
    back = columns_to_structures(structures_to_columns([atoms]))[0]
    assert np.array_equal(back.calc.results["stress"], [1, 2, 3, 0, 0, 0])


def test_unstorable_info_is_skipped_loudly_never_silently():
    a, b = bulk("Cu"), bulk("Cu")
    a.info.update(ok=1, vector=[1, 2], mixed=1, nul="a\x00")
    b.info.update(ok=2, mixed="x", none=None)
    a.calc = SinglePointCalculator(a, energy=1.0, magmom=0.5)
    b.set_constraint(FixAtoms([0]))
    b.set_celldisp([0.5, 0.0, 0.0])
    with pytest.warns(StorageWarning) as record:
        columns = structures_to_columns([a, b])
    text = str(record[0].message)
    assert {"info.vector", "info.mixed", "info.none", "info.nul", "calc.magmom",
            "constraints", "celldisp"} == set(columns["skipped_keys"])
    assert "list" in text
    assert "mixed types" in text
    assert "NUL" in text
    back = columns_to_structures(columns)
    assert [s.info for s in back] == [{"ok": 1}, {"ok": 2}]
    assert back[0].calc.results == {"energy": 1.0}


def test_empty_set_round_trips(tmp_path):
    write_table(tmp_path / "e.h5", structures_to_columns([]))
    assert columns_to_structures(read_table(tmp_path / "e.h5")) == []


_KEY = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
               min_size=1, max_size=6).filter(lambda k: k not in (".", ".."))
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=8)
_VALUES = {"int": st.integers(-(2**63), 2**63 - 1), "float": st.floats(width=64),
           "bool": st.booleans(), "str": _TEXT}
_FLOATS = st.floats(-1e3, 1e3, width=64)


@st.composite
def structure_sets(draw) -> list[Atoms]:
    schema = draw(st.dictionaries(_KEY, st.sampled_from(sorted(_VALUES)), max_size=3))
    out = []
    for _ in range(draw(st.integers(0, 4))):
        n = draw(st.integers(1, 4))
        atoms = Atoms(numbers=draw(arrays(np.int64, n, elements=st.integers(1, 94))),
                      positions=draw(arrays(np.float64, (n, 3), elements=_FLOATS)),
                      cell=draw(arrays(np.float64, (3, 3), elements=_FLOATS)),
                      pbc=draw(arrays(np.bool_, 3)))
        for key, kind in schema.items():
            if draw(st.booleans()):
                atoms.info[key] = draw(_VALUES[kind])
        labels = draw(st.sets(st.sampled_from(["energy", "free_energy", "forces", "stress"])))
        if labels:
            values = {"energy": draw(st.floats(width=64)), "free_energy": draw(_FLOATS),
                      "forces": draw(arrays(np.float64, (n, 3), elements=st.floats(width=64))),
                      "stress": draw(arrays(np.float64, 6, elements=_FLOATS))}
            atoms.calc = SinglePointCalculator(atoms, **{k: values[k] for k in labels})
        out.append(atoms)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structure_sets())
def test_random_sets_round_trip_through_hdf5(structures):
    with warnings.catch_warnings():
        warnings.simplefilter("error", StorageWarning)
        columns = structures_to_columns(structures)
    with tempfile.TemporaryDirectory() as tmp:
        write_table(Path(tmp) / "s.h5", columns)
        back = columns_to_structures(read_table(Path(tmp) / "s.h5"))
    assert digest(back) == digest(structures)


# ---------------------------------------------------------------- project


def test_project_round_trip_of_stages_configs_reports(saved):
    project, stages = saved
    assert project.runs() == ["run"]
    assert project.stages("run") == ["sample", "relax:volume", "perturb"]
    for name, structures in stages.items():
        assert digest(project.load_stage("run", name)) == digest(structures)
    configs = project.load_configs("run")
    assert configs == CONFIGS
    assert type(configs["executor"]) is Executor
    assert project.load_reports("run") == _reports(stages)
    assert project.load_recipe("run") == '{"nodes": {}}'
    info = project.run_info("run")
    assert info["versions"]["ase"]
    assert info["versions"]["h5py"]
    assert info["versions"]["python"]
    assert set(info["versions"]) >= {"pyiron_assyst", "numpy", "pyxtal", "spglib",
                                     "pyiron_workflow", "flowrep", "pyiron_base"}
    assert info["timings"]["user"] == {"total": 3.0}
    assert info["timings"]["stages"]["perturb"] == {"wall_time": 1.5, "calculator_time": 0.25}
    assert [s["n_structures"] for s in info["stages"]] == [4, 4, 12]


def test_reload_in_a_fresh_process_is_bit_identical_and_writes_nothing_outside(saved, tmp_path):
    project, stages = saved
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import sys, os\n"
        "from tests.test_storage import digest\n"
        "from pyiron_assyst.storage import Project\n"
        "p = Project(sys.argv[1], create=False)\n"
        "print(*[digest(p.load_stage('run', s)) for s in p.stages('run')])\n"
        "print('pyiron_base' in sys.modules, 'pyiron_workflow' in sys.modules)\n")
    out = _python(code, str(project.path), env={"HOME": str(home)}).splitlines()
    assert out[0].split() == [digest(s) for s in stages.values()]
    assert out[1] == "False False"
    assert list(home.iterdir()) == []


def test_pyiron_base_reads_the_files(saved, tmp_path):
    project, stages = saved
    run_dir = project.path / "runs" / "run"
    code = (
        "import sys, json, hashlib\n"
        "from pyiron_base import FileHDFio, FlattenedStorage\n"
        "s = FlattenedStorage()\n"
        "s.from_hdf(FileHDFio(sys.argv[1]), 'structures')\n"
        "print(json.dumps([len(s), s.get_array('info.uuid').tolist(),\n"
        "  hashlib.sha256(s.get_array('positions').tobytes()).hexdigest(),\n"
        "  FileHDFio(sys.argv[2])['configs/calculator']]))\n")
    out = _python(code, str(run_dir / "stages" / "stage002_perturb.h5"), str(run_dir / "run.h5"),
                  env={"PYIRONDISABLE": "True", "HOME": str(tmp_path)},
                  cwd=tmp_path)  # importing pyiron_base creates ./pyiron.log
    n, uuids, positions, config = json.loads(out)
    perturb = stages["perturb"]
    assert n == 12
    assert uuids == [a.info["uuid"] for a in perturb]
    assert positions == hashlib.sha256(np.concatenate([a.positions for a in perturb])
                                       .tobytes()).hexdigest()
    assert config == CONFIGS["calculator"].to_json()


def test_pyiron_base_project_reaches_runs_and_stages(saved, tmp_path):
    """As docs/storage.md shows: ``pyiron_base.Project(path)`` opens the project directory,
    ``pr["runs/<run>/run"]`` is the run file and ``pr["runs/<run>/stages/<file>"]`` a stage
    file, whose ``structures`` group becomes a ``FlattenedStorage``. Runs are not pyiron jobs:
    the job table stays empty and pyiron's database (in ``$HOME``) gets no row."""
    project, stages = saved
    code = (
        "import sys, json\n"
        "from pyiron_base import Project\n"
        "pr = Project(sys.argv[1])\n"
        "run = pr['runs/run/run']\n"
        "files = sorted(pr['runs/run/stages'].list_files('h5'))\n"
        "flat = pr['runs/run/stages/' + files[2]]['structures'].to_object()\n"
        "print(json.dumps([pr.list_dirs(), files, json.loads(run['run/meta'])['stages'],\n"
        "  run['configs/calculator'], type(flat).__name__, flat.get_array('identifier').tolist(),\n"
        "  flat.get_array('energy').tolist(), len(pr.job_table())]))\n")
    (tmp_path / "home").mkdir()
    out = _python(code, str(project.path), env={"HOME": str(tmp_path / "home")}, cwd=tmp_path)
    dirs, files, listed, config, kind, identifiers, energies, n_jobs = json.loads(
        out.splitlines()[-1])
    assert dirs == ["runs"]
    assert files == ["stage000_sample", "stage001_relax_volume", "stage002_perturb"]
    assert [s["file"] for s in listed] == [f"stages/{f}.h5" for f in files]
    assert config == CONFIGS["calculator"].to_json()
    assert kind == "FlattenedStorage"
    perturb = stages["perturb"]
    assert identifiers == [a.info["uuid"] for a in perturb]
    expected = [a.calc.results.get("energy", np.nan) if a.calc else np.nan for a in perturb]
    np.testing.assert_array_equal(energies, expected)
    assert n_jobs == 0


def test_stage_files_carry_what_pyiron_structure_containers_need(saved):
    """Format 3: ``symbols`` (pyiron's ``StructureStorage`` builds structures from them), the
    uuid as ``identifier`` (a hard link, no copy), ``stress`` with pyiron's sign (-σ)."""
    project, stages = saved
    relaxed = stages["relax:volume"]
    path = project.path / "runs" / "run" / "stages" / "stage001_relax_volume.h5"
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 3
        element, chunk = f["structures/element_arrays"], f["structures/chunk_arrays"]
        assert element["symbols"].dtype == np.dtype("S8")  # pyiron decodes it as U2
        assert [s.decode() for s in element["symbols"][()]] == [
            s for a in relaxed for s in a.get_chemical_symbols()]
        assert [s.decode() for s in chunk["identifier"][()]] == [a.info["uuid"] for a in relaxed]
        assert chunk["identifier"].id == chunk["info.uuid"].id
        stress = np.array([a.calc.results["stress"] for a in relaxed])
        assert chunk["stress"][()].tobytes() == (-stress).tobytes()
    assert digest(project.load_stage("run", "relax:volume")) == digest(relaxed)


def test_structures_without_uuid_are_identified_by_index(tmp_path):
    structures = [bulk("Cu"), molecule("H2O")]
    structures[0].info["uuid"] = "only-one"
    write_table(tmp_path / "s.h5", structures_to_columns(structures))
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["structures/chunk_arrays/identifier"][()].tolist() == [b"0", b"1"]


def test_projects_of_format_version_2_are_still_read(tmp_path):
    """``tests/data/project_v2`` was saved by the previous release: run ``old`` with the
    ``perturb`` stage of :func:`_run_structures` in ``stages/000_perturb.h5`` (format 2: ASE's
    stress sign, no ``symbols``, index identifiers)."""
    shutil.copytree(ROOT / "tests" / "data" / "project_v2", tmp_path / "p")
    path = tmp_path / "p" / "runs" / "old" / "stages" / "000_perturb.h5"
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2
        assert "symbols" not in f["structures/element_arrays"]
    structures = _run_structures()["perturb"]
    assert any("stress" in a.calc.results for a in structures if a.calc)
    assert digest(Project(tmp_path / "p", create=False).load_stage("old", "perturb")) == digest(
        structures)
    assert digest(columns_to_structures(read_table(path))) == digest(structures)


def test_symbols_that_disagree_with_numbers_are_refused(tmp_path):
    path = tmp_path / "s.h5"
    write_table(path, structures_to_columns([bulk("Cu"), bulk("NaCl", "rocksalt", a=5.6)]))
    with h5py.File(path, "r+") as f:
        dataset = f["structures/element_arrays/symbols"]
        edited = dataset[()]
        edited[1] = b"Ag"
        dataset[...] = edited
        dataset.attrs["crc32"] = np.uint32(zlib.crc32(edited.tobytes()))  # a consistent checksum
    with pytest.raises(StorageError, match="'symbols' disagree with 'numbers'"):
        read_table(path)
    assert len(read_table(path, select=["energy"])["energy"]) == 2  # numbers not read: no check


def test_loading_one_stage_reads_only_that_stage(saved, tmp_path, monkeypatch):
    _project, stages = saved
    copy = Project(tmp_path / "p")
    copy.save_run("run", stages=stages)
    stage_dir = copy.path / "runs" / "run" / "stages"
    (stage_dir / "stage002_perturb.h5").write_bytes(b"garbage")
    opened: list[str] = []
    real_file = h5py.File

    def spy(name, *args, **kwargs):
        opened.append(Path(name).name)
        return real_file(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", spy)
    assert digest(copy.load_stage("run", "sample")) == digest(stages["sample"])
    assert set(opened) == {"run.h5", "stage000_sample.h5"}
    with pytest.raises(StorageError, match="stage002_perturb.h5"):
        copy.load_stage("run", "perturb")


def test_corrupt_truncated_and_foreign_files_raise_storage_error(saved, tmp_path):
    _project, stages = saved
    p = Project(tmp_path / "p")
    p.save_run("run", stages=stages, configs=CONFIGS)
    p.save_run("other", stages=stages)
    run_dir = p.path / "runs" / "run"
    sample, relax, perturb = sorted((run_dir / "stages").iterdir())
    sample.write_bytes(sample.read_bytes()[: sample.stat().st_size // 2])
    with h5py.File(relax, "w") as f:
        f["x"] = 1
    (p.path / "runs" / "other" / "stages" / "stage002_perturb.h5").replace(perturb)
    cases = [(sample, "truncated or foreign"), (relax, "not a pyiron_assyst.structures"),
             (perturb, "does not belong")]
    for path, reason in cases:
        stage = {sample: "sample", relax: "relax:volume", perturb: "perturb"}[path]
        with pytest.raises(StorageError, match=reason) as error:
            p.load_stage("run", stage)
        assert str(path) in str(error.value)
        assert error.value.path == path
    with h5py.File(p.path / "runs" / "other" / "stages" / "stage000_sample.h5", "r+") as f:
        lengths = f["structures/chunk_arrays/length"]
        lengths[0] += 1
    with pytest.raises(StorageError, match="checksum mismatch in dataset "
                                           "'/structures/chunk_arrays/length'"):
        p.load_stage("other", "sample")
    with h5py.File(p.path / "runs" / "other" / "stages" / "stage000_sample.h5", "r+") as f:
        lengths = f["structures/chunk_arrays/length"]  # a consistent checksum, wrong lengths
        lengths.attrs["crc32"] = np.uint32(zlib.crc32(lengths[()].tobytes()))
    with pytest.raises(StorageError, match="inconsistent"):
        p.load_stage("other", "sample")
    run_file = run_dir / "run.h5"
    run_file.write_bytes(run_file.read_bytes()[:100])
    with pytest.raises(StorageError, match="run.h5"):
        p.load_configs("run")
    with pytest.raises(StorageError, match="no run 'missing'"):
        p.load_stage("missing", "sample")
    with pytest.raises(StorageError, match="no stage 'nope'"):
        p.load_stage("other", "nope")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "data.txt").write_text("x")
    with pytest.raises(StorageError, match="not a pyiron_assyst project"):
        Project(tmp_path / "foreign")


def test_stage_table_without_building_atoms(saved):
    project, stages = saved
    table = project.stage_table("run", "perturb")
    perturb = stages["perturb"]
    assert list(table["uuid"]) == [a.info["uuid"] for a in perturb]
    assert list(table["natoms"]) == [len(a) for a in perturb]
    assert np.isnan(table["energy"][2])
    assert table["energy"][1] == perturb[1].calc.results["energy"]
    assert list(table["has_forces"][:3]) == [True, False, False]
    assert table["volume_per_atom"][0] == pytest.approx(perturb[0].get_volume() / len(perturb[0]))
    assert np.isnan(table["volume_per_atom"][6])  # the water molecule
    relax = project.stage_table("run", "relax:volume")
    assert relax["converged"].dtype == bool
    assert list(relax["relax_steps"]) == [3, 24, 9, 48]
    sample = project.stage_table("run", "sample")
    assert list(sample["dim"]) == [3, 3, 0, 0]
    assert sample["note"][1] == "user note 1 ✓"


def test_lineage_walks_back_across_stages(saved, tmp_path):
    project, stages = saved
    leaf, relaxed, root = stages["perturb"][5], stages["relax:volume"][1], stages["sample"][1]
    assert project.lineage("run", leaf.info["uuid"]) == [
        (leaf.info["uuid"], "perturb:rattle"), (relaxed.info["uuid"], "relax:volume"),
        (root.info["uuid"], "sample")]
    assert project.lineage("run", root.info["uuid"]) == [(root.info["uuid"], "sample")]
    with pytest.raises(KeyError, match="no structure"):
        project.lineage("run", "not-a-uuid")
    partial = Project(tmp_path / "p")
    partial.save_run("r", stages={"perturb": stages["perturb"], "sample": stages["sample"]})
    assert [s for _, s in partial.lineage("r", leaf.info["uuid"])] == [
        "perturb:rattle", None, "sample"]


def test_invalid_inputs_fail_before_anything_is_written(tmp_path):
    @dataclass(frozen=True)
    class Holder(Config):
        f: object = None

    p = Project(tmp_path / "p")
    with pytest.raises(StorageError, match="config 'live' cannot be stored"):
        p.save_run("r", configs={"live": Holder(lambda: 0)}, stages={"s": [bulk("Cu")]})
    with pytest.raises(StorageError, match="invalid run name"):
        p.save_run("../x")
    with pytest.raises(StorageError, match="without '/'"):
        p.save_run("r", stages={"a/b": []})
    assert p.runs() == []
    assert os.listdir(p.path / "runs") == []


def test_overwrite_is_explicit_and_atomic(tmp_path):
    p = Project(tmp_path / "p")
    a, b = [bulk("Cu")], [bulk("Al"), bulk("Ni")]
    p.save_run("r", stages={"s": a})
    with pytest.raises(StorageError, match="exists"):
        p.save_run("r", stages={"s": b})
    p.save_run("r", stages={"s": b}, overwrite=True)
    assert digest(p.load_stage("r", "s")) == digest(b)
    # a writer killed between the two renames of an overwrite: the next writer restores
    runs = p.path / "runs"
    os.rename(runs / "r", runs / f".trash-{'0' * 32}-r")
    assert p.runs() == []
    p.save_run("other", stages={})
    assert p.runs() == ["other", "r"]
    assert digest(p.load_stage("r", "s")) == digest(b)


_HOLD_LOCK = """
import sys, time
from pyiron_assyst.storage import Project
with Project(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_second_writer_waits_or_gets_a_clear_error(tmp_path):
    path = tmp_path / "p"
    Project(path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path), "1.5"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StorageError, match=f"another process \\(pid {holder.pid}\\)"):
            Project(path, lock_timeout=0.1).save_run("a", stages={"s": [bulk("Cu")]})
        start = time.monotonic()
        Project(path, lock_timeout=30).save_run("b", stages={"s": [bulk("Cu")]})
        assert time.monotonic() - start > 0.3
        assert holder.wait(10) == 0
    finally:
        holder.kill()
        holder.wait()
    assert Project(path).runs() == ["b"]


_SLOW_WRITER = """
import sys
from ase.build import bulk
from pyiron_assyst.storage import Project
cells = [bulk("Cu", cubic=True).repeat(2) for _ in range(4000)]
Project(sys.argv[1]).save_run("big", stages={f"s{i}": cells for i in range(20)})
"""


def test_killed_writer_leaves_a_consistent_project(tmp_path):
    path = tmp_path / "p"
    stages = _run_structures()
    Project(path).save_run("done", stages=stages)
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(path)], cwd=ROOT)
    runs = path / "runs"
    deadline = time.monotonic() + 30
    while not any(p.name.startswith(".tmp-") for p in runs.iterdir()):
        assert writer.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.2)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert any(x.name.startswith(".tmp-") for x in runs.iterdir())  # killed mid-write
    p = Project(path, lock_timeout=5)
    assert p.runs() == ["done"]
    assert digest(p.load_stage("done", "perturb")) == digest(
        stages["perturb"])
    p.save_run("next", stages={})  # the lock died with the writer; its leftovers are removed
    assert sorted(x.name for x in runs.iterdir()) == ["done", "next"]
