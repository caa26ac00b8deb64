"""The command line: a real run through the installed console script, and clear bad-input errors."""

import json
import subprocess
import sys

import pytest
from ase.io import read

from pyiron_assyst import settings, workflows
from pyiron_assyst.cli import main

SMALL = """
[formulas]
elements = ["Cu"]
max_atoms = 2

[sample_config]
type = "SampleConfig"
spacegroups = [1, 2, 47, 191, 221, 225, 229]
seed = 2

[perturb_config]
type = "PerturbConfig"
retries = 3
filter = { type = "DistanceFilter", radii = 1.0 }

[[perturb_config.perturbations]]
type = "Rattle"
sigma = 0.1
supercell = true
copies = 2

[executor]
type = "Executor"
kind = "serial"
"""


def test_example_file_spells_out_the_macro_defaults():
    formulas, configs, output = settings.load_settings("examples/cu_emt.toml")
    assert configs["perturb_config"] == workflows.DEFAULT_PERTURB
    assert configs["final_filter"] == workflows.DEFAULT_FINAL_FILTER
    assert configs["sample_filter"] == workflows.DEFAULT_SAMPLE_FILTER
    assert [sum(f.values()) for f in formulas] == [1, 2, 3]
    assert output == {"directory": "assyst-output"}


def test_run_writes_training_set_and_summary(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    out = tmp_path / "out"
    done = subprocess.run(["pyiron-assyst", "run", str(path), "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    structures = read(out / "training_set.extxyz", index=":")
    assert summary["training_set"] == len(structures) > 0
    stages = {s["stage"]: s for s in summary["stages"]}
    assert stages["perturb"]["candidates"] == 2 * stages["relax:full"]["out"]
    for stage in summary["stages"]:
        assert stage["out"] + sum(stage["dropped"].values()) == stage["candidates"]
    assert "training set:" in (out / "summary.txt").read_text()
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "stage_counts.png" in figures and "energy_volume.png" in figures
    relaxed = [s for s in structures if s.info["step"] == "relax:full"]
    assert relaxed and all(s.get_forces().shape == (len(s), 3) for s in relaxed)


@pytest.mark.parametrize("argv,message", [
    (["run", "--elements", "Xx", "--serial"], "Formulas"),
    (["run", "--max-atoms", "0"], "max_atoms"),
    (["run", "missing.toml"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("pyiron-assyst: error:")


@pytest.mark.parametrize("text,message", [
    ("[formulas]\nelements = ['Cu']\n[nonsense]\n", "unknown table"),
    ("[calculator]\ntype = 'NoSuch'\n", "calculator.type"),
    ("[volume_relax]\ntype = 'VolumeRelax'\nforce_tolerance = -1\n", "force_tolerance"),
    ("[formulas\n", "not valid TOML"),
])
def test_bad_settings_files_name_the_problem(text, message, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path), "-o", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_module_entry_point_shows_help():
    done = subprocess.run([sys.executable, "-m", "pyiron_assyst.cli", "run", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "--max-atoms" in done.stdout


@pytest.mark.parametrize("name", ["production_unary.toml", "production_binary.toml"])
def test_presets_load(name):
    formulas, configs, _ = settings.load_settings(f"examples/{name}")
    assert max(sum(f.values()) for f in formulas) == configs["sample_config"].max_atoms == 10
