"""The command line: runs into a project, status, retry-failed, show, resume, clear errors.

One real run goes through the installed console script; the others call ``main`` in this
process (where the ``tests`` import prefix of the logging calculator is allowed), or, to be
killed, in a child process that allows it too.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from pyiron_assyst.cli import settings
from pyiron_assyst.cli.main import main
from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.stages.relax import VolumeRelax
from pyiron_assyst.storage import Project
from pyiron_assyst.workflow import macro as workflows

REPO = Path(__file__).resolve().parents[1]

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

LOGGED = """
[formulas]
elements = ["Cu"]
max_atoms = {max_atoms}

[sample_config]
type = "SampleConfig"
spacegroups = [47, 191, 221, 225, 229]
seed = 5

[perturb_config]
type = "PerturbConfig"
retries = 3
filter = {{ type = "DistanceFilter", radii = 1.0 }}

[[perturb_config.perturbations]]
type = "Rattle"
sigma = 0.05

[calculator]
type = "AseCalculator"
import_path = "tests.support.faulty_calculators:LoggedEMT"
kwargs = {{ fail_natoms = 2, fail_flag = "{flag}", log = "{log}" }}

[executor]
type = "Executor"
kind = "{kind}"
max_workers = 2
"""


def logged_settings(tmp_path: Path, max_atoms: int = 2, kind: str = "serial",
                    flag: str = "", log: str = "") -> Path:
    """Settings with LoggedEMT, failing for 2-atom cells while ``flag`` exists, logging to
    ``log`` (or ``$ASSYST_TEST_LOG`` if empty; workers spawned earlier may not see it)."""
    path = tmp_path / f"logged_{max_atoms}_{kind}.toml"
    path.write_text(LOGGED.format(max_atoms=max_atoms, kind=kind, flag=flag or tmp_path / "no",
                                  log=log))
    return path


def evaluations(log: Path) -> list[tuple[int, str]]:
    """``(natoms, uuid)`` of every evaluation LoggedEMT logged."""
    if not log.exists():
        return []
    return [(int(n), u) for _, n, u in (line.split() for line in log.read_text().splitlines())]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A project written by the console script."""
    tmp = tmp_path_factory.mktemp("cli")
    path = tmp / "small.toml"
    path.write_text(SMALL)
    out = tmp / "out"
    done = subprocess.run(["pyiron-assyst", "run", str(path), "-o", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp.iterdir()) == ["out", "small.toml"]  # nothing else
    return out


def test_example_file_spells_out_the_macro_defaults():
    formulas, configs, output = settings.load_settings("examples/cu_emt.toml")
    assert configs["perturb_config"] == workflows.DEFAULT_PERTURB
    assert configs["final_filter"] == workflows.DEFAULT_FINAL_FILTER
    assert configs["sample_filter"] == workflows.DEFAULT_SAMPLE_FILTER
    assert [sum(f.values()) for f in formulas] == [1, 2, 3]
    assert output == {"directory": "assyst-output"}


def test_run_writes_a_project_training_set_and_summary(finished):
    out = finished
    summary = json.loads((out / "summary.json").read_text())
    structures = read(out / "training_set.extxyz", index=":")
    assert summary["training_set"] == len(structures) > 0
    stages = {s["stage"]: s for s in summary["stages"]}
    assert stages["perturb"]["candidates"] == 2 * stages["relax:full"]["out"]
    for stage in summary["stages"]:
        assert stage["out"] + sum(stage["dropped"].values()) == stage["candidates"]
    assert "training set:" in (out / "summary.txt").read_text()
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "stage_counts.png" in figures
    assert "energy_volume.png" in figures
    relaxed = [s for s in structures if s.info["step"] == "relax:full"]
    assert relaxed
    assert all(s.get_forces().shape == (len(s), 3) for s in relaxed)
    # the run is stored in the project: recipe, every config, every stage, the reports
    project = Project(out, create=False)
    (run,) = project.runs()
    formulas, configs, _ = settings.load_settings(out.parent / "small.toml")
    stored = project.load_configs(run)
    assert stored["formulas"] == formulas
    assert stored["perturb_config"] == configs["perturb_config"]
    assert stored["volume_relax"] == VolumeRelax()
    assert stored["executor"] == configs["executor"]
    assert project.stages(run) == ["sampled", "volume_relaxed", "relaxed", "perturbed",
                                   "training_set"]
    training = project.load_stage(run, "training_set")
    assert [s.info["uuid"] for s in training] == [s.info["uuid"] for s in structures]
    assert all(np.allclose(a.positions, b.positions, atol=1e-7)  # extxyz: 8 decimals
               for a, b in zip(training, structures))
    assert project.load_reports(run)["relax_report"].stage == "relax:full"
    assert '"assyst"' in project.load_recipe(run)


def test_status_of_a_finished_run(finished, capsys):
    assert main(["status", str(finished)]) == 0
    out = capsys.readouterr().out
    assert "complete" in out
    assert "relax:volume:" in out
    assert "final_filter:" in out
    assert "failed structures" not in out


def test_show_counts_configs_lineage_and_a_stage(finished, capsys):
    project = Project(finished, create=False)
    (run,) = project.runs()
    perturbed = project.load_stage(run, "perturbed")[0]
    assert main(["show", str(finished), "--configs", "--lineage", perturbed.info["uuid"],
                 "--stage", "relaxed", "--rows", "3"]) == 0
    out = capsys.readouterr().out
    n_training = len(project.load_stage(run, "training_set"))
    assert re.search(rf"training_set\s+{n_training} structures", out)
    assert '"@config": "VolumeRelax"' in out
    lines = out.split("lineage of")[1].split("stage relaxed:")[0].splitlines()[1:]
    chain = [line.split(maxsplit=2) for line in lines if line.strip()]
    assert [step.split(":")[0] for _, _, step in chain] == ["perturb", "relax", "relax", "sample"]
    assert [step for _, _, step in chain[1:]] == ["relax:full", "relax:volume", "sample"]
    assert chain[0][1] == perturbed.info["uuid"]
    assert chain[-1][1] == perturbed.info["root"]
    assert "stage relaxed:" in out
    assert "energy_per_atom" in out


def test_retry_failed_recomputes_only_the_failed_structures(tmp_path, capsys):
    flag = tmp_path / "failing"
    flag.touch()
    log = tmp_path / "calls.log"
    project_dir = tmp_path / "project"
    path = logged_settings(tmp_path, kind="process", flag=str(flag), log=str(log))
    assert main(["run", str(path), "-o", str(project_dir), "--name", "flaky",
                 "--no-figures"]) == 0
    project = Project(project_dir, create=False)
    failed = project.load_reports("flaky")["volume_report"].failures
    assert failed
    assert {d.reason for d in failed} == {"calculator_error"}
    capsys.readouterr()
    assert main(["status", str(project_dir)]) == 0
    assert f"{len(failed)} failed structures" in capsys.readouterr().out
    # a finished run is not replaced by accident
    assert main(["run", str(path), "-o", str(project_dir), "--name", "flaky"]) == 2
    assert "exists" in capsys.readouterr().err
    flag.unlink()
    before = len(evaluations(log))
    # the stored calculator is an AseCalculator: it runs again only when the user trusts it
    assert main(["retry-failed", str(project_dir), "--no-figures"]) == 2
    assert "--trust-project" in capsys.readouterr().err
    assert len(evaluations(log)) == before
    assert main(["retry-failed", str(project_dir), "--no-figures", "--trust-project"]) == 0
    assert f"{len(failed)} failed structures before, 0 now" in capsys.readouterr().out
    retried = evaluations(log)[before:]
    assert retried
    assert {n for n, _ in retried} == {2}
    reports = project.load_reports("flaky")
    assert reports["volume_report"].failures == ()  # ... which now made it
    assert reports["volume_report"].n_out == reports["volume_report"].n_in


@pytest.mark.slow
def test_an_extended_project_reuses_every_relaxation(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("ASSYST_TEST_LOG", str(log))
    project_dir = tmp_path / "project"
    assert main(["run", str(logged_settings(tmp_path, max_atoms=1)), "-o", str(project_dir),
                 "--no-figures"]) == 0
    first = len(evaluations(log))
    assert main(["run", str(logged_settings(tmp_path, max_atoms=3)), "-o", str(project_dir),
                 "--no-figures"]) == 0
    added = evaluations(log)[first:]
    assert added
    assert all(n > 1 for n, _ in added)
    project = Project(project_dir, create=False)
    assert len(project.runs()) == 2


KILLABLE = """
import sys
from pyiron_assyst.core.config import register_import_prefix
register_import_prefix("tests")
from pyiron_assyst.cli.main import main
from pyiron_assyst.stages.relax import VolumeRelax
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_killed_run_shows_its_progress_and_resumes(tmp_path, capsys):
    settings_path = logged_settings(tmp_path, kind="process")
    project_dir = tmp_path / "project"
    env = {**os.environ, "ASSYST_TEST_DELAY": "0.01", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", KILLABLE, "run", str(settings_path), "-o",
                              str(project_dir), "--no-figures"], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    volume = ResultCache(project_dir / "cache").namespace("relax:volume")
    deadline = time.monotonic() + 300
    try:
        while len(volume.listing()[0]) < 2 and child.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()
    assert main(["status", str(project_dir)]) == 0
    status = capsys.readouterr().out
    assert "incomplete (running or killed)" in status
    line = next(line for line in status.splitlines() if "relax:volume:" in line)
    finished, total = (int(w) for w in line.rsplit(":", 1)[1].split()[:3:2])
    assert 2 <= finished < total
    # the same command again resumes and completes the run
    assert main(["run", str(settings_path), "-o", str(project_dir), "--no-figures",
                 "--serial"]) == 0
    assert main(["run", str(settings_path), "-o", str(tmp_path / "reference"), "--no-figures",
                 "--serial"]) == 0
    resumed, reference = Project(project_dir), Project(tmp_path / "reference")
    (run,) = resumed.runs()
    assert reference.runs() == [run]
    for stage in resumed.stages(run):
        for a, b in zip(resumed.load_stage(run, stage), reference.load_stage(run, stage),
                        strict=True):
            assert a.info == b.info
            assert a.positions.tobytes() == b.positions.tobytes()
            assert (a.calc is None) == (b.calc is None)
            if a.calc is not None:
                assert a.get_potential_energy() == b.get_potential_energy()


def test_bad_projects_exit_2_with_one_line_naming_the_file(finished, tmp_path, capsys):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    assert main(["run", "-o", str(tmp_path / "foreign"), "--serial"]) == 2
    assert main(["status", str(tmp_path / "missing")]) == 2
    broken = tmp_path / "broken"
    shutil.copytree(finished, broken)
    (run,) = Project(broken).runs()
    run_file = broken / "runs" / run / "run.h5"
    run_file.write_bytes(run_file.read_bytes()[:100])
    assert main(["show", str(broken)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert all(e.startswith("pyiron-assyst: error:") for e in err)
    assert "not empty" in err[0]
    assert str(tmp_path / "missing") in err[1]
    assert str(run_file) in err[2]


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--elements", "Xx", "--serial"], "Formulas"),
    (["run", "--max-atoms", "0"], "max_atoms"),
    (["run", "missing.toml"], "does not exist"),
    (["run", "--task-timeout", "-1"], "task_timeout"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    assert err.startswith("pyiron-assyst: error:")
    assert not (tmp_path / "assyst-output").exists()  # nothing written for bad input


@pytest.mark.parametrize(("text", "message"), [
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
    assert done.returncode == 0
    assert "--max-atoms" in done.stdout
    assert "--retry-failed" in (
        done.stdout)
    for command in ("status", "retry-failed", "show"):
        assert command in subprocess.run([sys.executable, "-m", "pyiron_assyst.cli", "--help"],
                                         capture_output=True, text=True).stdout


BLOCK_FIT_EXTRA = """
import sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "mace"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def test_fit_without_its_extra_stops_before_any_work_with_the_install_line(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCK_FIT_EXTRA)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "pyiron_assyst.cli", "fit", "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert "needs torch, mace from the 'fit' extra" in proc.stderr
    assert "pip install torch==2.13.0 && pip install 'pyiron_assyst[fit]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing sampled, relaxed or labelled
