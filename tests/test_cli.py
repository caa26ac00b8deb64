"""The command line: runs into a project, status, retry-failed, show, resume, clear errors.

One real run goes through the installed console script; the others call ``main`` in this
process (where the ``tests`` import prefix of the logging calculator is allowed), or, to be
killed, in a child process that allows it too.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from pyiron_assyst.calculators import EMT, Morse
from pyiron_assyst.cli import settings
from pyiron_assyst.cli.label import LabelSource
from pyiron_assyst.cli.main import main
from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.export import FORMATS, labels_of
from pyiron_assyst.stages.relax import VolumeRelax
from pyiron_assyst.storage import Project
from pyiron_assyst.workflow import macro as workflows
from pyiron_assyst.workflow import pipeline
from tests.support.mtp import parse_cfg
from tests.support.processes import kill_when

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
    assert configs["curation"] == workflows.DEFAULT_CURATION
    assert configs["short_range_config"] == pipeline.defaults()["short_range_config"]
    assert configs["select_config"] == pipeline.DEFAULT_SELECT  # off
    assert configs["reference"] == configs["calculator"]
    assert set(configs) == {c.name for c in pipeline.CONFIGS}  # every table spelled out
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
                                   "short_range", "isolated_atoms", "training_set"]
    assert project.stages(run) == list(pipeline.stored_stages())
    assert all(s.calc is not None and s.get_forces().shape == (len(s), 3) for s in structures)
    assert stored["reference"] == stored["calculator"] == EMT()
    assert stored["curation"] == workflows.DEFAULT_CURATION
    curate = summary["stages"][-1]
    assert curate["stage"] == "curate"
    assert curate["out"] == summary["training_set"]
    assert summary["reference_energies"] == {"Cu": 3.51}  # EMT's isolated Cu atom
    training = project.load_stage(run, "training_set")
    assert [s.info["uuid"] for s in training] == [s.info["uuid"] for s in structures]
    assert all(np.allclose(a.positions, b.positions, atol=1e-7)  # extxyz: 8 decimals
               for a, b in zip(training, structures))
    assert project.load_reports(run)["relax_report"].stage == "relax:full"
    # the stored recipe is the graph that ran: each config a node whose inputs are its fields
    # (nested configs as child nodes ``cfg_<name>_<field>``), constants, the cache directory
    recipe = json.loads(project.load_recipe(run))
    assert recipe["nodes"]["assyst"]["reference"]["info"]["qualname"] == "assyst"
    made = {label: node["reference"]["info"] for label, node in recipe["nodes"].items()
            if "_constant_" not in label and label != "assyst"}
    assert {"cfg_formulas", *(f"cfg_{c.name}" for c in pipeline.CONFIGS)} <= set(made)
    assert {info["module"] for info in made.values()} == {"pyiron_assyst.workflow.forms"}
    assert all(label.startswith("cfg_") for label in made)
    assert {"assyst_cache_directory_constant_0", "assyst_retry_failed_constant_0"} <= set(
        recipe["nodes"])
    assert str(out / "cache") in project.load_recipe(run)


def test_summary_and_stage_count_figure_count_every_removal_by_reason(finished, tmp_path,
                                                                     monkeypatch):
    from pyiron_assyst.cli._outputs import write_outputs

    project = Project(finished, create=False)
    (run,) = project.runs()
    reports = project.load_reports(run)
    assert reports["curate_report"].drop_counts().get("duplicate", 0) > 0
    text = (finished / "summary.txt").read_text()
    for report in reports.values():  # each stage's line, with its drops per reason
        assert report.summary() in text
    drawn = []
    monkeypatch.setattr("pyiron_assyst.figures.files.stage_counts",
                        lambda given, ax: drawn.append(list(given)) or ax)
    write_outputs({**reports, "training_set": project.load_stage(run, "training_set")},
                  tmp_path / "again")
    (bars,) = drawn
    assert [r.stage for r in bars][-3:] == ["label", "isolated_atoms", "curate"]
    assert bars[-1].drop_counts() == reports["curate_report"].drop_counts()


def test_status_of_a_finished_run(finished, capsys):
    assert main(["status", str(finished)]) == 0
    out = capsys.readouterr().out
    assert "complete" in out
    assert "relax:volume:" in out
    assert "final_filter:" in out
    assert "label:" in out
    assert "isolated_atoms:" in out
    assert "curate:" in out
    assert "failed structures" not in out


def test_the_label_table_is_the_reference_calculator(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[label]\ntype = "Morse"\nepsilon = 0.3\n[curation]\n'
                    'type = "CurationConfig"\nforce_cap = 20.0\n')
    _, configs, _ = settings.load_settings(path)
    assert configs == {"reference": Morse(epsilon=0.3), "curation": workflows.CurationConfig(
        force_cap=20.0)}


def test_the_reference_flag_sets_only_the_label_calculator(tmp_path):
    from pyiron_assyst.cli.main import build_parser
    from pyiron_assyst.cli.run import _resolve

    def resolved(*flags: str) -> dict:
        args = build_parser().parse_args(["run", *flags, "-o", str(tmp_path / "p")])
        return _resolve(args)[1]

    flagged = resolved("--reference", "morse")
    assert (flagged["calculator"], flagged["reference"]) == (EMT(), Morse())
    plain = resolved()
    assert plain["reference"] == plain["calculator"] == EMT()  # default: the relaxations'
    assert not (tmp_path / "p").exists()  # resolving runs nothing


def test_export_right_after_run_works_for_every_format(finished, tmp_path, capsys,
                                                       monkeypatch):
    project = Project(finished, create=False)
    (run,) = project.runs()
    training = project.load_stage(run, "training_set")
    (atom,) = project.load_stage(run, "isolated_atoms")
    reference = labels_of(atom).free_energy
    files = {fmt: tmp_path / f"{fmt}{suffix}" for fmt, (_, suffix) in FORMATS.items()}
    for fmt, path in files.items():
        assert main(["export", str(finished), "-f", fmt, "-o", str(path)]) == 0, fmt
        assert f"wrote {len(training)} structures of {run}/training_set" in (
            capsys.readouterr().out)
    energies = [labels_of(a).free_energy for a in training]
    corrected = [e - len(a) * reference for e, a in zip(energies, training)]
    frames = read(files["extxyz"], ":")
    assert [f.get_potential_energy(force_consistent=True) for f in frames] == energies
    mace = read(files["ref-extxyz"], ":")
    assert mace[0].info["config_type"] == "IsolatedAtom"
    assert mace[0].info["REF_energy"] == (
        reference)
    assert [f.info["REF_energy"] for f in mace[1:]] == energies
    import pandas as pd

    frame = pd.read_pickle(files["pacemaker"], compression="gzip")
    assert frame["energy_corrected"].tolist() == corrected
    assert [b["energy"] for b in parse_cfg(files["mtp"].read_text())] == energies
    monkeypatch.setenv("PYIRONDISABLE", "True")
    from pyiron_base import FileHDFio, FlattenedStorage

    storage = FlattenedStorage()
    storage.from_hdf(FileHDFio(str(files["potentialfit"])), "structures")
    assert [storage.get_array("energy", i) for i in range(len(storage))] == corrected


def test_label_makes_a_new_run_whose_lineage_reaches_the_source_run(finished, tmp_path,
                                                                     capsys):
    project_dir = tmp_path / "project"
    shutil.copytree(finished, project_dir)
    project = Project(project_dir, create=False)
    (source,) = project.runs()
    assert main(["label", str(project_dir), "--reference", "morse", "--serial",
                 "--no-figures"]) == 0
    out = capsys.readouterr().out
    (new,) = set(project.runs()) - {source}
    assert new.startswith(f"{source}.label-")
    assert f"saved as run {new!r}" in out
    assert project.stages(new) == ["isolated_atoms", "training_set"]
    before = project.load_stage(source, "training_set")
    after = project.load_stage(new, "training_set")
    reports = project.load_reports(new)
    assert reports["label_report"].force_calls == len(before)  # every structure again
    assert len(after) + len(reports["curate_report"].drops) == len(before)
    by_uuid = {b.info["uuid"]: b for b in before}
    for atoms in after:  # each a child of the structure it relabels, with Morse's labels
        old = by_uuid[atoms.info["parent"]]
        expected = old.copy()
        expected.calc = Morse().calculator_for(expected)
        assert labels_of(atoms).energy == expected.get_potential_energy()
        assert atoms.info["root"] == old.info["root"]
        assert atoms.info["step"] == "label"
    configs = project.load_configs(new)
    assert configs["reference"] == Morse()
    assert configs["formulas"] == project.load_configs(
        source)["formulas"]
    deepest = max(after, key=lambda a: a.info["ancestry"].count(";"))
    assert main(["show", str(project_dir), "--run", new, "--lineage",
                 deepest.info["uuid"]]) == 0
    chain = [line.split(maxsplit=2) for line in
             capsys.readouterr().out.split("lineage of")[1].splitlines()[1:] if line.strip()]
    steps = [step for _, _, step in chain]
    assert steps[:2] == ["label", "label"]
    assert steps[2].startswith("perturb")
    assert steps[3:] == ["relax:full", "relax:volume", "sample"]  # found in the source run
    assert chain[-1][1] == deepest.info["root"]
    assert configs["source"] == LabelSource(source, "training_set")
    assert main(["retry-failed", str(project_dir), "--run", new, "--serial",
                 "--no-figures"]) == 0  # labels the source again (from the cache), not a run
    assert project.stages(new) == ["isolated_atoms", "training_set"]
    assert [a.info["uuid"] for a in project.load_stage(new, "training_set")] == [
        a.info["uuid"] for a in after]
    capsys.readouterr()
    assert main(["label", str(project_dir), "--run", source, "--reference", "morse"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["label", str(project_dir), "--run", source]) == 2
    assert "--reference" in capsys.readouterr().err


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
    reports = project.load_reports("flaky")
    failed = [d for r in reports.values() for d in r.failures]
    # the 2-atom cells fail in the volume relaxation, and in the labels of the sampled set
    assert reports["volume_report"].failures
    assert reports["label_report"].failures
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
    assert reports["label_report"].n_out == reports["label_report"].n_in


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


def start_killable(args: list[str], delay: float) -> subprocess.Popen:
    """The command line ``args`` in a child process whose EMT evaluations each sleep
    ``delay`` s (``ASSYST_TEST_DELAY``), so that a test can kill it part-way."""
    env = {**os.environ, "ASSYST_TEST_DELAY": str(delay), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", KILLABLE, *args], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_a_killed_run_shows_its_progress_and_resumes(tmp_path, capsys):
    settings_path = logged_settings(tmp_path, kind="process")
    project_dir = tmp_path / "project"
    child = start_killable(["run", str(settings_path), "-o", str(project_dir), "--no-figures"],
                           0.01)
    volume = ResultCache(project_dir / "cache").namespace("relax:volume")
    kill_when(child, lambda: len(volume.listing()[0]) >= 2)
    assert main(["status", str(project_dir)]) == 0
    status = capsys.readouterr().out
    assert "incomplete (running or killed)" in status
    assert re.search(r"^\s+label: not started$", status, re.MULTILINE)  # listed, to come
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


LABEL_SETTINGS = """
[label]
type = "AseCalculator"
import_path = "tests.support.faulty_calculators:LoggedEMT"
kwargs = {{ log = "{log}" }}

[executor]
type = "Executor"
kind = "serial"
"""


@pytest.mark.slow
def test_a_killed_label_run_shows_its_progress_and_resumes_without_recomputing(
        finished, tmp_path, capsys):
    project_dir = tmp_path / "project"
    shutil.copytree(finished, project_dir)
    log = tmp_path / "labels.log"
    path = tmp_path / "label.toml"
    path.write_text(LABEL_SETTINGS.format(log=log))
    child = start_killable(["label", str(project_dir), "--settings", str(path),
                            "--no-figures"], 0.05)
    labels = ResultCache(project_dir / "cache").namespace("label")
    known = len(labels.listing()[0])  # the EMT labels of the source run
    kill_when(child, lambda: len(labels.listing()[0]) >= known + 4)
    done = len(labels.listing()[0]) - known
    assert main(["status", str(project_dir)]) == 0
    status = capsys.readouterr().out
    progress = status.split("incomplete (running or killed)")[1]
    line = next(line for line in progress.splitlines() if line.strip().startswith("label:"))
    finished_labels, total = (int(w) for w in line.rsplit(":", 1)[1].split()[:3:2])
    assert 3 <= finished_labels < total
    assert "relax:volume" not in progress
    before = len(evaluations(log))
    assert main(["label", str(project_dir), "--settings", str(path), "--no-figures"]) == 0
    project = Project(project_dir, create=False)
    new = next(r for r in project.runs() if ".label-" in r)
    reports = project.load_reports(new)
    needed = reports["label_report"].n_in + reports["reference_report"].n_in
    resumed = evaluations(log)[before:]
    assert len(resumed) == needed - done  # nothing that had finished is computed again


@pytest.mark.slow
def test_a_run_killed_while_labelling_shows_label_progress_and_resumes(tmp_path, capsys):
    """``status`` of a ``run`` killed in its label stage: relaxations done, labels part-way;
    the same command again computes only the labels that had not finished."""
    log = tmp_path / "labels.log"
    path = tmp_path / "run.toml"  # EMT relaxes; a slowed, logging EMT labels everything
    path.write_text(SMALL + LABEL_SETTINGS.split("[executor]")[0].format(log=log))
    project_dir = tmp_path / "project"
    child = start_killable(["run", str(path), "-o", str(project_dir), "--no-figures"], 0.05)
    labels = ResultCache(project_dir / "cache").namespace("label")
    kill_when(child, lambda: len(labels.listing()[0]) >= 4)
    done = len(labels.listing()[0])
    assert main(["status", str(project_dir)]) == 0
    status = capsys.readouterr().out
    progress = status.split("incomplete (running or killed)")[1]
    counts = {step.strip(): [int(w) for w in numbers.split()[:3:2]]
              for step, numbers in (line.rsplit(":", 1) for line in progress.splitlines()
                                    if " of " in line)}
    assert counts["relax:volume"][0] == counts["relax:volume"][1] > 0
    assert counts["relax:full"][0] == counts["relax:full"][1] > 0
    finished_labels, total = counts["label"]
    assert 3 <= finished_labels < total
    before = len(evaluations(log))
    assert main(["run", str(path), "-o", str(project_dir), "--no-figures"]) == 0
    (run,) = Project(project_dir, create=False).runs()
    reports = Project(project_dir, create=False).load_reports(run)
    # the reference isolated atom is the short-range stage's isolated atom: one calculation
    needed = reports["label_report"].n_in
    assert reports["reference_report"].n_in == 1
    assert reports["label_report"].force_calls == reports["label_report"].n_in  # all anew
    assert len(evaluations(log)[before:]) == needed - done  # no finished label again


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
    (["run", "--max-atoms", "0"], "--max-atoms must be an integer >= 1; got 0"),
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
    ("[formulas]\nelements = ['Cu']\nmax_atom = 2\n",
     "formulas: unknown key(s) ['max_atom']; allowed: elements, min_atoms, max_atoms, or list; "
     "did you mean 'max_atoms'?"),
    ("[output]\ndirectroy = 'x'\n",
     "output: unknown key(s) ['directroy']; allowed: directory; did you mean 'directory'?"),
    ("[full_relax]\ntype = 'FullRelax'\nforc_tolerance = 0.1\n",
     "full_relax.forc_tolerance is not a field of FullRelax; allowed: pressure, optimizer, "
     "force_tolerance, max_steps, keep_unconverged, trace, calculator, pre_relax, "
     "pre_relax_steps; did you mean 'force_tolerance'?"),
    ("[full_relax]\ntype = 'VolumRelax'\n", "got 'VolumRelax'; did you mean 'VolumeRelax'?"),
    ("[calculatr]\ntype = 'EMT'\n", "unknown table(s) ['calculatr']"),
    ("[select]\ntype = 'SelectConfig'\nfracton = 0.5\n",
     "select.fracton is not a field of SelectConfig; allowed: method, fraction, count, seed, "
     "regularization, cost_aware, cost_model, keep_compositions, descriptor; "
     "did you mean 'fraction'?"),
    ("[select]\ntype = 'SelectConfig'\nfraction = 1.5\n",
     "SelectConfig.fraction must be a number in (0, 1]; got 1.5"),
    ("[select]\ntype = 'SelectConfig'\nmethod = 'best'\n", "SelectConfig.method must be one of"),
    ("[select]\ntype = 'FullRelax'\n", "select.type must be one of ['SelectConfig']"),
    ("[selection]\ntype = 'SelectConfig'\n", "unknown table(s) ['selection']; allowed: "),
])
def test_bad_settings_files_name_the_problem(text, message, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path), "-o", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


SELECT_HALF = """
[select]
type = "SelectConfig"
fraction = 0.5
seed = 1
descriptor = { type = "RadialDescriptor" }
"""


def test_a_select_table_labels_fewer_structures_and_counts_them(finished, tmp_path):
    """``[select]`` keeps half of the filtered set: the labels shrink by its ``not_selected``
    drops, counted in the summary; the stored stages are those of a run without it."""
    path = tmp_path / "half.toml"
    path.write_text(SMALL + SELECT_HALF)
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "--no-figures"]) == 0
    base = {s["stage"]: s for s in json.loads((finished / "summary.json").read_text())["stages"]}
    half = {s["stage"]: s for s in json.loads(
        (tmp_path / "out" / "summary.json").read_text())["stages"]}
    assert base["select"]["dropped"] == {}  # off by default
    assert "selection_off: 1" in (finished / "summary.txt").read_text()
    dropped = half["select"]["dropped"]["not_selected"]
    assert half["select"]["in"] == base["final_filter"]["out"] == half["final_filter"]["out"]
    assert half["select"]["out"] == half["select"]["in"] - dropped == round(
        0.5 * half["select"]["in"])
    assert half["label"]["in"] == base["label"]["in"] - dropped
    assert f"not_selected: {dropped}" in (tmp_path / "out" / "summary.txt").read_text()
    project, old = Project(tmp_path / "out", create=False), Project(finished, create=False)
    (run,), (base_run,) = project.runs(), old.runs()
    assert run != base_run
    assert project.stages(run) == old.stages(base_run)  # the same stage files
    assert project.load_configs(run)["select_config"] == settings.config_from_table(
        {"type": "SelectConfig", "fraction": 0.5, "seed": 1,
         "descriptor": {"type": "RadialDescriptor"}})
    assert project.load_reports(run)["select_report"].drop_counts() == {
        "not_selected": dropped}


def test_an_off_selection_keeps_the_run_names_from_before_the_select_stage(finished):
    """A run name hashes the science: an off ``select_config`` (any with ``fraction=1``) is
    left out, so configs stored before the select stage existed name the same run."""
    from pyiron_assyst.cli._pipeline import content_name
    from pyiron_assyst.stages.select import SelectConfig

    project = Project(finished, create=False)
    (run,) = project.runs()
    configs = project.load_configs(run)
    formulas = configs.pop("formulas")
    assert configs["select_config"] == pipeline.DEFAULT_SELECT
    assert content_name(formulas, configs) == run
    before = {k: v for k, v in configs.items() if k != "select_config"}
    assert content_name(formulas, before) == run
    off = {**configs, "select_config": SelectConfig(fraction=1.0, method="random", seed=7)}
    assert content_name(formulas, off) == run
    on = {**configs, "select_config": SelectConfig(fraction=0.5)}
    assert content_name(formulas, on) != run


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


def test_fit_refuses_an_element_its_reference_cannot_compute_before_any_work(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCK_FIT_EXTRA)  # the check comes first
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "pyiron_assyst.cli", "fit", "--element", "Fe",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    assert "EMT cannot compute Fe: it knows Ag, Al, Au, C, Cu" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_run_refuses_elements_its_calculator_cannot_compute_before_any_work(tmp_path, capsys):
    out = tmp_path / "fe"
    assert main(["run", "--elements", "Fe", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "[calculator] EMT cannot compute Fe: it knows Ag, Al, Au, C, Cu" in err
    assert not out.exists()  # nothing sampled, nothing stored
    assert main(["run", "--elements", "Fe", "--calculator", "morse", "--reference", "emt",
                 "-o", str(out)]) == 2
    assert "[label] EMT cannot compute Fe" in capsys.readouterr().err
    settings_path = tmp_path / "pre.toml"
    settings_path.write_text('[full_relax]\ntype = "FullRelax"\npre_relax = { type = "EMT" }\n')
    assert main(["run", str(settings_path), "--elements", "Fe", "--calculator", "morse",
                 "--reference", "morse", "-o", str(out)]) == 2
    assert "[full_relax] pre_relax EMT cannot compute Fe" in capsys.readouterr().err
    assert not out.exists()


def test_label_refuses_a_reference_that_cannot_compute_the_runs_elements(tmp_path, capsys):
    """An Fe run (Morse) labelled with EMT, which has no Fe: ``label`` stops before any work
    with the [label] table named, exit 2, and no new run in the project."""
    settings_path = tmp_path / "fe.toml"
    settings_path.write_text('[sample_config]\ntype = "SampleConfig"\nspacegroups = [221, 229]'
                             '\nmax_atoms = 1\n')
    out = tmp_path / "fe"
    assert main(["run", str(settings_path), "--elements", "Fe", "--max-atoms", "1",
                 "--calculator", "morse", "-o", str(out), "--no-figures", "--serial"]) == 0
    before = Project(out, create=False).runs()
    capsys.readouterr()
    assert main(["label", str(out), "--reference", "emt", "--serial"]) == 2
    err = capsys.readouterr().err
    assert "[label] EMT cannot compute Fe: it knows Ag, Al, Au, C, Cu" in err
    assert len(err.strip().splitlines()) == 1
    assert Project(out, create=False).runs() == before


def test_bad_flags_are_refused_before_the_workflow_stack_is_imported(tmp_path):
    code = ("import sys\nfrom pyiron_assyst.cli.main import main\n"
            "status = main(sys.argv[1:])\n"
            "print(status, 'pyiron_workflow' in sys.modules)")
    for argv, message in ((["--max-atoms", "0"], "--max-atoms must be an integer >= 1; got 0"),
                          (["--elements", "Fe"], "EMT cannot compute Fe")):
        proc = subprocess.run([sys.executable, "-c", code, "run", *argv, "-o",
                               str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
        assert proc.stdout.split() == ["2", "False"], proc.stderr
        assert message in proc.stderr
        assert not (tmp_path / "x").exists()


def test_retry_failed_with_nothing_failed_says_so_and_does_nothing(finished, capsys):
    project = Project(finished, create=False)
    (run,) = project.runs()
    assert sum(len(r.failures) for r in project.load_reports(run).values()) == 0
    stamps = {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()}
    assert main(["retry-failed", str(finished)]) == 0
    assert capsys.readouterr().out == f"run {run!r}: no failed structures; nothing to retry\n"
    assert {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()} == stamps


@pytest.mark.parametrize("command", ["run", "status", "retry-failed", "show", "label", "export",
                                     "plan", "fit"])
def test_help_texts_are_complete_sentences(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    description = " ".join(text.split("\n\n")[1].split())
    assert description[0].isupper(), description
    assert description.endswith("."), description
    assert "``" not in description


def test_run_help_shows_the_parameters_of_its_calculators(capsys):
    from pyiron_assyst.calculators import LennardJones, Morse

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    morse, lj = Morse(), LennardJones()
    assert f"Morse(epsilon={morse.epsilon:g} eV, r0={morse.r0:g} Å, rho0={morse.rho0:g})" in text
    assert f"LennardJones(sigma={lj.sigma:g} Å, epsilon={lj.epsilon:g} eV" in text
    assert "[calculator] and [label] tables" in text


ALL_FAIL = """
[formulas]
elements = ["Cu"]
max_atoms = 1

[sample_config]
type = "SampleConfig"
spacegroups = [221, 225, 229]

[calculator]
type = "AseCalculator"
import_path = "tests.support.faulty_calculators:FaultyEMT"
kwargs = {raise_natoms = 1}
"""


def test_a_stage_in_which_everything_failed_stops_with_its_cause(tmp_path, capsys):
    path = tmp_path / "fail.toml"
    path.write_text(ALL_FAIL)
    out = tmp_path / "out"
    assert main(["run", str(path), "-o", str(out), "--serial", "--no-figures"]) == 1
    err = capsys.readouterr().err
    stages = {s["stage"]: s for s in json.loads((out / "summary.json").read_text())["stages"]}
    n = stages["relax:volume"]["candidates"]
    assert n >= 1
    assert err.startswith(f"pyiron-assyst: failed: stage relax:volume: every structure failed "
                          f"({n} of {n}; calculator_error: {n}, e.g. 'RuntimeError: ")
    assert "'pyiron-assyst retry-failed'" in err
    summary = (out / "summary.txt").read_text()
    assert f"  relax:volume failed: calculator_error: {n}, e.g. 'RuntimeError: " in summary
    assert stages["relax:volume"]["failure_examples"]["calculator_error"].startswith(
        "RuntimeError: ")
    assert Project(out, create=False).runs()  # saved, so that retry-failed can resume it


def test_status_lists_failures_by_cause_with_an_example(tmp_path, capsys):
    path = tmp_path / "fail.toml"
    path.write_text(ALL_FAIL)
    out = tmp_path / "out"
    assert main(["run", str(path), "-o", str(out), "--serial", "--no-figures"]) == 1
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    n = json.loads((out / "summary.json").read_text())["stages"][1]["candidates"]
    assert f"  relax:volume failed: calculator_error: {n}, e.g. 'RuntimeError: " in text
    assert "Cu, 1 atom, 1 formula; FaultyEMT; created " in text


def _settings(tmp_path: Path, name: str, seed: int) -> Path:
    path = tmp_path / name
    path.write_text(SMALL.replace("seed = 2", f"seed = {seed}").replace("max_atoms = 2",
                                                                       "max_atoms = 1"))
    return path


def test_two_runs_in_one_project_keep_their_own_outputs(tmp_path, capsys):
    out = tmp_path / "out"
    first, second = _settings(tmp_path, "a.toml", 2), _settings(tmp_path, "b.toml", 3)
    assert main(["run", str(first), "-o", str(out), "--no-figures"]) == 0
    (run_a,) = Project(out, create=False).runs()
    kept = (out / "outputs" / run_a / "training_set.extxyz").read_bytes()
    capsys.readouterr()
    assert main(["run", str(second), "-o", str(out), "--no-figures"]) == 0
    text = capsys.readouterr().out
    (run_b,) = set(Project(out, create=False).runs()) - {run_a}
    assert f"were run {run_a}'s (kept in outputs/{run_a}/); they are now run {run_b}'s" in text
    assert (out / "outputs" / run_a / "training_set.extxyz").read_bytes() == kept
    assert json.loads((out / "outputs" / run_a / "summary.json").read_text())["run"] == run_a
    top = json.loads((out / "summary.json").read_text())
    assert top["run"] == run_b
    assert top["description"].startswith("Cu, 1 atom, 1 formula; EMT; created ")
    assert (out / "training_set.extxyz").read_bytes() == (
        out / "outputs" / run_b / "training_set.extxyz").read_bytes() != kept
    assert (out / "summary.txt").read_text().startswith(f"run {run_b}: Cu, 1 atom")
    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    assert status.count("Cu, 1 atom, 1 formula; EMT; created ") == 2
    assert main(["show", str(out), "--run", run_a]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[1].startswith(f"* {run_a}  Cu, 1 atom") or shown[2].startswith(
        f"* {run_a}  Cu, 1 atom")
    assert any(line.startswith(f"  {run_b}  Cu, 1 atom") for line in shown[1:3])


def test_running_a_finished_run_again_computes_nothing(tmp_path):
    out = tmp_path / "out"
    path = _settings(tmp_path, "a.toml", 2)
    assert main(["run", str(path), "-o", str(out)]) == 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    cached = sorted(p.name for p in (out / "cache").rglob("*.json"))
    (out / "summary.txt").unlink()  # the top-level files come back from the run's folder
    code = ("import sys\nfrom pyiron_assyst.cli.main import main\n"
            "status = main(sys.argv[1:])\n"
            "print(status, 'pyiron_workflow' in sys.modules, 'ase.optimize' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, "run", str(path), "-o", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.stdout.splitlines()[-1].split() == ["0", "False", "False"], proc.stderr
    (run,) = Project(out, create=False).runs()
    assert f"run {run!r} is finished: nothing computed" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()} == stamps
    assert sorted(p.name for p in (out / "cache").rglob("*.json")) == cached
    assert (out / "summary.txt").read_text() == (out / "outputs" / run / "summary.txt"
                                                 ).read_text()
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == sorted(
        p.name for p in (out / "outputs" / run / "figures").glob("*.png"))
    # --overwrite computes it again (from the cache)
    assert main(["run", str(path), "-o", str(out), "--overwrite", "--no-figures"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()
            } != stamps
    assert not (out / "figures").exists() or not any((out / "figures").glob("*.png"))
