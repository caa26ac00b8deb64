"""The files a user reads after a run, one folder per run and the latest run's on top.

Every run writes ``training_set.extxyz``, ``summary.txt``, ``summary.json`` and ``figures/``
into ``<project>/outputs/<run>/``, then copies them to the top of the project, where the README
promises them. So a second run into a project never overwrites the outputs of the first
silently: they stay in their own folder, and the command says that the top-level files now
belong to another run. ``summary.txt`` opens with the run's name, formulas, calculator and
date. Each file is replaced atomically (a reader sees the old file or the new one).

Running a finished run again reuses its folder: nothing is computed, the top-level files are
copied from it (:func:`reuse_outputs`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pyiron_assyst.cli._failures import failure_causes, failure_lines
from pyiron_assyst.cli._runs import describe_run, stage_calculators
from pyiron_assyst.storage import Project
from pyiron_assyst.storage.files import atomic_path, write_text_atomic

__all__ = ["OUTPUTS_DIRECTORY", "owner", "publish", "reuse_outputs", "run_outputs",
           "write_outputs"]

OUTPUTS_DIRECTORY = "outputs"
"""Sub-directory of a project holding one output folder per run."""
_FILES = ("training_set.extxyz", "summary.txt", "summary.json")


def run_outputs(project: Project, run: str) -> Path:
    """The output folder of ``run``: ``<project>/outputs/<run>``."""
    return project.path / OUTPUTS_DIRECTORY / run


def owner(directory: Path) -> str | None:
    """The run whose outputs ``directory`` holds (from its ``summary.json``), if known."""
    try:
        return json.loads((directory / "summary.json").read_text()).get("run") or None
    except (OSError, ValueError, AttributeError):
        return None


def _copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _promote(project: Project, run: str) -> str:
    """Copy ``run``'s outputs to the top of the project; a notice if they replace another
    run's (whose own folder is kept, or first made from the top-level files of a project
    written before per-run folders)."""
    top, folder = project.path, run_outputs(project, run)
    previous = owner(top)
    if previous and previous != run and not run_outputs(project, previous).exists():
        _snapshot(top, run_outputs(project, previous))
    figures = folder / "figures"
    if (top / "figures").is_dir():
        for stale in (top / "figures").glob("*.png"):
            if not (figures / stale.name).exists():
                stale.unlink()
    if figures.is_dir():
        (top / "figures").mkdir(exist_ok=True)
        for picture in sorted(figures.glob("*.png")):
            _copy(picture, top / "figures" / picture.name)
    for name in _FILES:  # summary.json last: it names the owner
        if (folder / name).exists():
            _copy(folder / name, top / name)
    if previous and previous != run:
        return (f"the top-level outputs of {top}/ were run {previous}'s (kept in "
                f"{OUTPUTS_DIRECTORY}/{previous}/); they are now run {run}'s\n")
    return ""


def _snapshot(top: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        if (top / name).exists():
            _copy(top / name, folder / name)
    if (top / "figures").is_dir():
        shutil.copytree(top / "figures", folder / "figures", dirs_exist_ok=True)


def publish(project: Project, run: str, outputs: dict[str, Any], figures: bool = True) -> str:
    """Write ``run``'s outputs into its folder and copy them to the top of the project.

    Returns the summary text, followed by a notice when the top-level files belonged to
    another run.
    """
    folder = run_outputs(project, run)
    if not figures and (folder / "figures").exists():
        shutil.rmtree(folder / "figures")  # no stale figures of the run's last computation
    calculators = stage_calculators(project.load_configs(run))
    text = write_outputs(outputs, folder, figures, run, describe_run(project, run), calculators)
    return text + _promote(project, run)


def reuse_outputs(project: Project, run: str, figures: bool = True) -> str | None:
    """The summary text of a finished ``run`` whose folder is whole (``figures``: with its
    figures), after copying its files to the top of the project; ``None`` if it must be
    computed (incomplete run, no folder, figures missing)."""
    folder = run_outputs(project, run)
    whole = all((folder / name).exists() for name in _FILES)
    if not whole or (figures and not any((folder / "figures").glob("*.png"))):
        return None
    if owner(folder) != run:
        return None
    return (folder / "summary.txt").read_text() + _promote(project, run)


def write_outputs(outputs: dict[str, Any], directory: Path, figures: bool = True,
                  run: str = "", header: str = "",
                  calculators: dict[str, str] | None = None) -> str:
    """Write ``training_set.extxyz``, ``summary.txt`` / ``.json`` and ``figures/`` of a run,
    each file atomically (a reader sees the old file or the new one, never a partial one).

    Reports (and the summary's lines, and the bars of the stage-count figure) follow the
    pipeline's step order; every removal is counted by reason. ``run`` and ``header`` (its
    description) open ``summary.txt`` and are stored in ``summary.json``; ``calculators``
    (``{stage: name}``) are named on the figures' energy axes.
    """
    from ase.io import write

    from pyiron_assyst.figures.files import write_all
    from pyiron_assyst.workflow.pipeline import STEPS, figure_stages

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "training_set.extxyz") as tmp:
        write(tmp, outputs["training_set"], format="extxyz")
    reports = [outputs[s.report] for s in STEPS if s.report in outputs]
    lines = [f"run {run}: {header}"] if run else []
    lines += [line for r in reports for line in (r.summary(), *failure_lines(r))]
    lines.append(f"training set: {len(outputs['training_set'])} structures")
    energies = outputs.get("reference_energies")
    if energies:
        lines.append("isolated-atom reference energies (eV): " + " ".join(
            f"{s}={e!r}" for s, e in energies.items()))
    text = "\n".join(lines) + "\n"
    write_text_atomic(directory / "summary.txt", text)
    if figures:
        sets = {s: outputs[s] for s in figure_stages() if s in outputs}
        write_all(sets, reports, directory / "figures", calculators=calculators)
    write_text_atomic(directory / "summary.json", json.dumps({
        "run": run, "description": header,
        "training_set": len(outputs["training_set"]),
        "reference_energies": energies or {},
        "stages": [{"stage": r.stage, "in": r.n_in, "candidates": r.n_candidates,
                    "out": r.n_out, "dropped": r.drop_counts(), "flagged": r.flag_counts(),
                    "failed": len(r.failures), "wall_time_s": r.wall_time,
                    "failure_examples": {reason: detail for reason, (_, detail)
                                         in failure_causes(r).items()}} for r in reports],
    }, indent=2))
    return text
