"""Exports: every format read back and compared exactly with the canonical labels."""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read

from pyiron_assyst.calculators import EMT
from pyiron_assyst.cli.export import add_export_command, parse_reference_energies
from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.export import (
    FORMATS,
    ExportError,
    export,
    labels_of,
    virial,
    write_extxyz,
    write_mtp,
    write_pacemaker,
    write_ref_extxyz,
    write_training_container,
)
from pyiron_assyst.export.pacemaker import COLUMNS
from pyiron_assyst.export.potentialfit import STORAGE_TYPE
from pyiron_assyst.storage import Project
from tests.support.datasets import REFERENCES, training_set
from tests.support.mtp import TINY, parse_cfg, tiny_numbers

SERIAL = Executor(kind="serial")
@pytest.fixture(scope="module")
def structures() -> list[Atoms]:
    return training_set()


def rounded(values: np.ndarray) -> np.ndarray:
    """What ASE's extxyz writer keeps of per-atom floats (``%16.8f``)."""
    return np.vectorize(lambda x: float(f"{x:16.8f}"))(values)


# ----------------------------------------------------------------------------- canonical


def test_canonical_labels_use_free_energy_and_ase_stress(structures):
    labels = labels_of(structures[0])
    assert labels.free_energy == labels.energy - 0.125 * 4
    assert labels.stress is not None
    assert (labels.stress[:3] < 0).all()
    assert labels_of(structures[2]).stress is None
    assert labels_of(structures[3]).stress is None
    with pytest.raises(ExportError, match="no label"):
        labels_of(bulk("Cu"))


# ----------------------------------------------------------------------------- extxyz


def test_extxyz_reads_back_as_ase_wrote_it(structures, tmp_path):
    path = write_extxyz([*structures, bulk("Ag")], tmp_path / "t.extxyz")
    frames = read(path, ":")
    assert len(frames) == 5
    assert frames[4].calc is None
    for atoms, frame in zip(structures, frames):
        labels, results = labels_of(atoms), frame.calc.results
        assert results["energy"] == labels.energy
        assert results["free_energy"] == (
            labels.free_energy)
        np.testing.assert_array_equal(results["forces"], rounded(labels.forces))
        np.testing.assert_array_equal(frame.positions, rounded(atoms.positions))
        np.testing.assert_array_equal(frame.cell.array, atoms.cell.array)
        np.testing.assert_array_equal(frame.pbc, atoms.pbc)
        if labels.stress is None:
            assert "stress" not in results
        else:
            np.testing.assert_array_equal(results["stress"], labels.stress)
        for key in ("uuid", "parent", "step", "label_calculator"):
            assert frame.info[key] == atoms.info[key]
    with pytest.raises(ExportError, match="no label"):
        write_extxyz([bulk("Ag")], tmp_path / "u.extxyz", require_labels=True)


def test_ref_extxyz_has_ref_keys_and_isolated_atoms(structures, tmp_path):
    path = write_ref_extxyz(structures, tmp_path / "mace.extxyz", REFERENCES)
    frames = read(path, ":")
    assert len(frames) == 6
    for (symbol, energy), frame in zip(REFERENCES.items(), frames[:2]):
        assert frame.get_chemical_symbols() == [symbol]
        assert frame.info["config_type"] == "IsolatedAtom"
        assert frame.info["REF_energy"] == energy
    for atoms, frame in zip(structures, frames[2:]):
        labels = labels_of(atoms)
        assert frame.calc is None  # labels stay data, never calculator results
        assert frame.info["REF_energy"] == labels.free_energy
        np.testing.assert_array_equal(frame.arrays["REF_forces"], rounded(labels.forces))
        if labels.stress is None:
            assert "REF_stress" not in frame.info
        else:
            np.testing.assert_array_equal(frame.info["REF_stress"], labels.stress)
        assert frame.info["uuid"] == atoms.info["uuid"]
    plain = read(write_ref_extxyz(structures, tmp_path / "nequip.extxyz"), ":")
    assert len(plain) == 4
    assert "config_type" not in plain[0].info


# ----------------------------------------------------------------------------- pacemaker


def test_pacemaker_frame_reads_back_exactly(structures, tmp_path):
    path = write_pacemaker(structures, tmp_path / "train.pckl.gzip", REFERENCES)
    with gzip.open(path, "rb") as f:
        data = f.read()
    assert data[:2] == b"\x80\x04"  # pickle protocol 4
    frame = pd.read_pickle(path, compression="gzip")
    assert tuple(frame.columns) == COLUMNS
    assert frame.columns.dtype == object
    assert frame["name"].dtype == object
    assert frame["NUMBER_OF_ATOMS"].dtype == np.int64
    for row, atoms in zip(frame.itertuples(index=False), structures):
        labels = labels_of(atoms)
        shift = sum(REFERENCES[s] for s in atoms.get_chemical_symbols())
        assert row.name == uuid_of(atoms)
        assert len(atoms) == row.NUMBER_OF_ATOMS
        assert row.energy == labels.free_energy
        assert row.energy_corrected == labels.free_energy - shift
        np.testing.assert_array_equal(row.forces, labels.forces)
        assert row.forces.dtype == np.float64
        assert row.forces.shape == (len(atoms), 3)
        assert row.ase_atoms.calc is None
        np.testing.assert_array_equal(row.ase_atoms.positions, atoms.positions)
        np.testing.assert_array_equal(row.ase_atoms.cell.array, atoms.cell.array)
        assert row.ase_atoms.get_chemical_symbols() == atoms.get_chemical_symbols()
        assert row.ase_atoms.pbc.tolist() == [atoms.pbc.any()] * 3  # pacemaker: all or none


def test_pacemaker_without_references_warns_and_fits_total_energies(structures, tmp_path):
    with pytest.warns(UserWarning, match="reference"):
        write_pacemaker(structures, tmp_path / "t.pckl.gzip")
    frame = pd.read_pickle(tmp_path / "t.pckl.gzip", compression="gzip")
    assert (frame["energy_corrected"] == frame["energy"]).all()
    with pytest.raises(ExportError, match="no reference energy for \\['Ag'\\]"):
        write_pacemaker(structures, tmp_path / "u.pckl.gzip", {"Cu": 0.0})


# ----------------------------------------------------------------------------- mtp


def test_mtp_cfg_reads_back_exactly(structures, tmp_path):
    order = write_mtp(structures, tmp_path / "train.cfg")
    assert order == ["Cu", "Ag"]  # by atomic number
    blocks = parse_cfg((tmp_path / "train.cfg").read_text())
    assert len(blocks) == 4
    for atoms, block in zip(structures, blocks):
        labels = labels_of(atoms)
        assert block["size"] == len(atoms)
        assert block["ids"] == list(range(1, len(atoms) + 1))
        assert block["types"] == [order.index(s) for s in atoms.get_chemical_symbols()]
        np.testing.assert_array_equal(block["positions"], atoms.positions)
        np.testing.assert_array_equal(block["forces"], labels.forces)
        assert block["energy"] == labels.free_energy
        assert block["features"]["uuid"] == uuid_of(atoms)
        if atoms.pbc.all():
            np.testing.assert_array_equal(block["cell"], atoms.cell.array)
            np.testing.assert_array_equal(block["virial"], -labels.stress * atoms.get_volume())
    assert (blocks[0]["virial"][:3] > 0).all()  # compressed cell: positive PlusStress
    np.testing.assert_array_equal(blocks[2]["cell"], structures[2].cell.array)  # slab
    assert "virial" not in blocks[2]
    assert "cell" not in blocks[3]


def test_mtp_fields_stay_apart_with_three_digit_exponents(tmp_path):
    atoms = tiny_numbers()
    write_mtp([atoms], tmp_path / "tiny.cfg")
    text = (tmp_path / "tiny.cfg").read_text()
    assert f"{TINY:.16e}" in text
    assert len(f"{TINY:.16e}") == 24
    rows = text.splitlines()
    atom_rows = rows[rows.index(" AtomData:  id type       cartes_x      cartes_y      cartes_z"
                                "           fx          fy          fz") + 1:][:2]
    assert [len(r.split()) for r in atom_rows] == [8, 8]
    for row in rows:  # no number runs into the next one: every '-' of a mantissa follows a
        assert not re.search(r"[0-9]-[0-9]\.", row), row  # space
    (block,) = parse_cfg(text)
    labels = labels_of(atoms)
    np.testing.assert_array_equal(block["cell"], atoms.cell.array)
    np.testing.assert_array_equal(block["positions"], atoms.positions)
    np.testing.assert_array_equal(block["forces"], labels.forces)
    assert block["energy"] == TINY
    np.testing.assert_array_equal(block["virial"], virial(atoms, labels.stress))


def test_mtp_element_order_and_partly_periodic_cells(structures, tmp_path):
    order = write_mtp(structures[:2], tmp_path / "t.cfg", elements=["Ag", "Cu", "Ni"])
    assert order == ["Ag", "Cu", "Ni"]
    types = parse_cfg((tmp_path / "t.cfg").read_text())[1]["types"]
    assert types == [1 if s == "Cu" else 0 for s in structures[1].get_chemical_symbols()]
    with pytest.raises(ExportError, match="lacks \\['Ag'\\]"):
        write_mtp(structures, tmp_path / "u.cfg", elements=["Cu"])
    thin = structures[2].copy()
    thin.calc = structures[2].calc
    thickness = np.ptp(thin.positions[:, 2])
    thin.cell[2, 2] = thickness + 4.0  # 4 Å of vacuum between the slab and its image
    with pytest.warns(UserWarning, match="vacuum along cell vector 2 is only 4"):
        write_mtp([thin], tmp_path / "w.cfg")
    rod = structures[3].copy()
    rod.calc = structures[3].calc
    rod.pbc = (True, False, False)
    rod.cell = [5.0, 0.0, 0.0]
    with pytest.raises(ExportError, match="no full cell"):
        write_mtp([rod], tmp_path / "v.cfg")
    assert not (tmp_path / "v.cfg").exists()  # nothing half-written


# ----------------------------------------------------------------------------- potentialfit


def test_training_container_layout_and_values(structures, tmp_path):
    path = write_training_container(structures, tmp_path / "tc.h5", REFERENCES)
    with h5py.File(path) as f:
        group = f["structures"]
        for key, value in STORAGE_TYPE.items():
            assert group[key][()].tobytes().decode() == value
        chunk, element = group["chunk_arrays"], group["element_arrays"]
        assert set(chunk) == {"identifier", "energy", "energy_uncorrected", "cell", "pbc",
                              "length", "start_index", "stress"}
        assert set(element) == {"symbols", "positions", "forces"}
        assert group["num_chunks"][0] == 4
        assert group["num_elements"][0] == 4 + 4 + 8 + 3
        assert chunk["length"].dtype == np.int32
        assert element["symbols"].dtype == "S8"
        lengths, starts = chunk["length"][()], chunk["start_index"][()]
        for i, atoms in enumerate(structures):
            labels, atom_slice = labels_of(atoms), slice(starts[i], starts[i] + lengths[i])
            shift = sum(REFERENCES[s] for s in atoms.get_chemical_symbols())
            assert chunk["identifier"][i].decode() == uuid_of(atoms)
            assert chunk["energy_uncorrected"][i] == labels.free_energy
            assert chunk["energy"][i] == labels.free_energy - shift
            np.testing.assert_array_equal(chunk["cell"][i], atoms.cell.array)
            np.testing.assert_array_equal(chunk["pbc"][i], [atoms.pbc.any()] * 3)  # slab: 3-D
            np.testing.assert_array_equal(element["positions"][atom_slice], atoms.positions)
            np.testing.assert_array_equal(element["forces"][atom_slice], labels.forces)
            assert [s.decode() for s in element["symbols"][atom_slice]] == (
                atoms.get_chemical_symbols())
            if labels.stress is None:
                assert np.isnan(chunk["stress"][i]).all()
            else:  # pyiron's pressure sign
                np.testing.assert_array_equal(chunk["stress"][i], -labels.stress)


def test_training_container_loads_as_pyiron_flattened_storage(structures, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("PYIRONDISABLE", "True")  # no ~/pyiron.db; must not leak to later tests
    from pyiron_base import FileHDFio, FlattenedStorage

    magnetic = structures[0].copy()
    magnetic.calc = structures[0].calc
    magnetic.set_initial_magnetic_moments([1.0, 0.0, 2.0, 0.5])
    path = write_training_container([magnetic, *structures[1:]], tmp_path / "tc.h5")
    storage = FlattenedStorage()
    storage.from_hdf(FileHDFio(str(path)), "structures")
    assert len(storage) == 4
    assert "energy_uncorrected" not in storage.list_arrays()
    for i, atoms in enumerate(structures):
        labels = labels_of(atoms)
        assert storage.get_array("identifier", i) == uuid_of(atoms)
        assert storage.get_array("energy", i) == labels.free_energy
        np.testing.assert_array_equal(storage.get_array("forces", i), labels.forces)
        np.testing.assert_array_equal(storage.get_array("positions", i), atoms.positions)
        assert list(storage.get_array("symbols", i)) == atoms.get_chemical_symbols()
    np.testing.assert_array_equal(storage.get_array("spins", 0), [1.0, 0.0, 2.0, 0.5])
    np.testing.assert_array_equal(storage.get_array("spins", 1), np.zeros(4))


# ----------------------------------------------------------------------------- dispatch, CLI


def test_export_dispatch_checks_its_options(structures, tmp_path):
    assert set(FORMATS) == {"extxyz", "ref-extxyz", "pacemaker", "mtp", "potentialfit"}
    assert export(structures, tmp_path / "t.cfg", "mtp", elements=["Cu", "Ag"]) == ["Cu", "Ag"]
    with pytest.raises(ExportError, match="unknown export format"):
        export(structures, tmp_path / "t", "xyz")
    with pytest.raises(ExportError, match="no reference energies"):
        export(structures, tmp_path / "t.cfg", "mtp", reference_energies=REFERENCES)
    with pytest.raises(ExportError, match="no element order"):
        export(structures, tmp_path / "t.h5", "potentialfit", elements=["Cu"])


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pyiron-assyst")
    add_export_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_exports_a_stored_stage(structures, tmp_path, capsys):
    project = Project(tmp_path / "project")
    project.save_run("run1", configs={"calculator": EMT()},
                     stages={"relaxed": structures[:2], "label": structures})
    out = tmp_path / "out" / "train.cfg"
    assert run_cli(["export", str(project.path), "-f", "mtp", "-o", str(out)]) == 0
    assert "wrote 4 structures of run1/label" in capsys.readouterr().out
    assert len(parse_cfg(out.read_text())) == 4
    target = tmp_path / "tc.h5"
    assert run_cli(["export", str(project.path), "--stage", "relaxed", "-f", "potentialfit",
                    "-o", str(target), "--reference-energies", "Cu=-0.25", "Ag=0.5"]) == 0
    with h5py.File(target) as f:
        energies = f["structures/chunk_arrays/energy"][()]
    assert energies[0] == labels_of(structures[0]).free_energy - 4 * -0.25
    assert run_cli(["export", str(project.path), "-f", "ref-extxyz", "-o",
                    str(tmp_path / "m.extxyz"), "--reference-energies", "compute"]) == 0
    text = capsys.readouterr().out
    assert "reference energies (eV): Ag=" in text
    frames = read(tmp_path / "m.extxyz", ":")
    assert frames[0].info["config_type"] == "IsolatedAtom"


def test_cli_reports_bad_input_with_status_2(structures, tmp_path, capsys):
    project = Project(tmp_path / "project")
    project.save_run("a", stages={"label": structures})
    project.save_run("b", stages={"label": structures})
    assert run_cli(["export", str(project.path), "-f", "mtp"]) == 2
    assert "choose one with --run" in capsys.readouterr().err
    assert run_cli(["export", str(project.path), "--run", "a", "--stage", "x", "-f",
                    "mtp"]) == 2
    assert run_cli(["export", str(tmp_path / "missing"), "-f", "mtp"]) == 2
    assert run_cli(["export", str(project.path), "--run", "a", "-f", "pacemaker",
                    "--reference-energies", "Cu=abc"]) == 2
    assert "is not a number" in capsys.readouterr().err
    assert run_cli(["export", str(project.path), "--run", "a", "-f", "mtp",
                    "--reference-energies", "compute"]) == 2
    assert "no 'reference' or 'calculator' config" in capsys.readouterr().err
    assert parse_reference_energies(["Cu=1", "Ag=-2.5"]) == {"Cu": 1.0, "Ag": -2.5}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run_cli(["export", str(project.path), "--run", "b", "-f", "extxyz", "-o",
                        str(tmp_path / "b.extxyz")]) == 0


def test_to_training_container_without_pyiron_potentialfit_names_the_install_command(
        monkeypatch, tmp_path):
    """Where pyiron_potentialfit is missing, the function and its node exist and say what to
    install; nothing is created (``tests/test_potentialfit_integration.py`` runs them where it
    is installed)."""
    from pyiron_assyst.export import potentialfit_available, to_training_container
    from pyiron_assyst.export.nodes import training_container

    monkeypatch.setitem(sys.modules, "pyiron_potentialfit", None)  # import fails
    for make in (to_training_container, training_container):
        with pytest.raises(ImportError, match=re.escape(
                'pip install pyiron_assyst "pyiron_potentialfit==0.3.15"')):
            make(training_set(), str(tmp_path / "fit"), "assyst")
    assert list(tmp_path.iterdir()) == []
    assert not potentialfit_available()
