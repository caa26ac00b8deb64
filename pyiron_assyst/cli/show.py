"""``pyiron-assyst show``: what a project holds.

Every run of the project with its formulas, calculator and date; the chosen one (``--run``,
default the latest) with its state, stages (structures, atoms) and package versions; with
``--configs`` every config as JSON; with ``--lineage UUID`` the ancestors of one structure
back to its sampled crystal, each with the step that made it (ancestors stored in other runs of the
project, e.g. the source of a relabelled run, are found there); with ``--stage NAME`` the table
of a stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pyiron_assyst.cli._pipeline import is_complete, latest_run
from pyiron_assyst.cli._runs import describe_run
from pyiron_assyst.cli._text import description
from pyiron_assyst.storage import Project, StorageError

__all__ = ["add_show_command", "show_command"]

_TABLE_COLUMNS = ("uuid", "step", "natoms", "energy_per_atom", "volume_per_atom")


def add_show_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``show`` to the sub-commands."""
    show = subparsers.add_parser("show", help="inspect a stored project",
                                 description=description(__doc__))
    show.add_argument("project", nargs="?", default="assyst-output",
                      help="project directory (default assyst-output)")
    show.add_argument("--run", help="the run (default: the latest)")
    show.add_argument("--configs", action="store_true", help="print every config as JSON")
    show.add_argument("--lineage", metavar="UUID", help="ancestors of one structure")
    show.add_argument("--stage", help="print the table of this stage")
    show.add_argument("--rows", type=int, default=20, help="rows of --stage (default 20)")
    show.set_defaults(handler=show_command)
    return show


def _run_list(project: Project, shown: str) -> list[str]:
    """One line per run, oldest first; ``*`` marks the one shown in detail."""
    runs = sorted(project.runs(), key=lambda r: project.run_info(r)["created"])
    return [f"{'*' if r == shown else ' '} {r}  {describe_run(project, r)}" for r in runs]


def _overview(project: Project, run: str) -> list[str]:
    info = project.run_info(run)
    state = "complete" if is_complete(project, run) else "incomplete"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    lines = [f"run {run}: {state}; {describe_run(project, run)}", f"  versions: {versions}"]
    lines.extend(f"  {stage['name']:<16} {stage['n_structures']:>8} structures "
                 f"{stage['n_atoms']:>9} atoms" for stage in info["stages"])
    return lines


def _configs(project: Project, run: str) -> list[str]:
    lines = []
    for name, config in project.load_configs(run).items():
        lines.append(f"{name}: {json.dumps(json.loads(config.to_json()), indent=2)}")
    return lines


def _lineage(project: Project, run: str, uuid: str) -> list[str]:
    chain = project.lineage(run, uuid)
    others = sorted((r for r in project.runs() if r != run),
                    key=lambda r: project.run_info(r)["created"], reverse=True)
    chain = [(u, step if step is not None else _step_elsewhere(project, others, u))
             for u, step in chain]
    lines = [f"lineage of {uuid} (structure first, root last):"]
    for generation, (ancestor, step) in enumerate(chain):
        lines.append(f"  {generation:>2}  {ancestor}  {step or '(not stored)'}")
    return lines


def _step_elsewhere(project: Project, runs: list[str], uuid: str) -> str | None:
    """The step of ``uuid`` in the newest of ``runs`` that stores it (a relabelled run's
    ancestors live in its source run), ``None`` if none does."""
    for other in runs:
        try:
            return project.lineage(other, uuid)[0][1]
        except KeyError:
            continue
    return None


def _stage(project: Project, run: str, stage: str, rows: int) -> list[str]:
    table = project.stage_table(run, stage)
    columns = [c for c in _TABLE_COLUMNS if c in table.columns]
    head = table[columns].head(rows).to_string()
    return [f"stage {stage}: {len(table)} structures", head]


def show_command(args: argparse.Namespace) -> int:
    """Handler of ``show``."""
    project = Project(Path(args.project), create=False)
    run = latest_run(project, args.run)
    lines = [f"project {project.path}: {len(project.runs())} runs",
             *_run_list(project, run), *_overview(project, run)]
    if args.configs:
        lines += _configs(project, run)
    if args.lineage:
        try:
            lines += _lineage(project, run, args.lineage)
        except KeyError as error:
            raise StorageError(f"run {run!r}: {error.args[0]}", project.path) from None
    if args.stage:
        lines += _stage(project, run, args.stage, args.rows)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
