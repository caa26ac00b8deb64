"""``pyiron-assyst export``: write a stored stage in a fitting code's format.

::

    pyiron-assyst export PROJECT --format pacemaker -o train.pckl.gzip
    pyiron-assyst export PROJECT --run run1 --stage label --format mtp --elements Cu Ag -o t.cfg
    pyiron-assyst export PROJECT --format potentialfit --reference-energies Cu=-0.0051 Ag=0.0023
    pyiron-assyst export PROJECT --format ref-extxyz --reference-energies compute

The run defaults to the only run of the project (else ``--run`` is required), the stage to the
run's last stage (the curated, labelled ``training_set`` of a ``run``). The formats that take
reference energies (``ref-extxyz``, ``pacemaker``, ``potentialfit``) use the isolated-atom
energies the run stored (stage ``isolated_atoms``, computed with the run's reference
calculator) unless ``--reference-energies`` gives others: ``EL=EV`` pairs, ``compute`` (with
the run's stored ``reference``, else ``calculator``, config) or ``none`` (total energies). The
output defaults to ``<run>_<stage>`` with the format's usual suffix (run and stage names
reduced to letters, digits and ``_ . -``, so a name stored in a project never leads out of
the working directory). A stored calculator that could start a program (e.g. an
``AseCalculator``) computes reference energies only with ``--trust-project``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_export_command", "parse_reference_energies", "run_export"]

logger = logging.getLogger(__name__)


def add_export_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``export`` sub-command to ``subparsers`` (from ``add_subparsers``); its handler
    is :func:`run_export` (set as the ``handler`` default)."""
    from pyiron_assyst.cli.trust import add_trust_flag
    from pyiron_assyst.export import FORMATS

    parser = subparsers.add_parser(
        "export", help="write a stored stage for a fitting code",
        description="Write the structures of one stage of a stored run in a fitting code's "
                    "format (units and signs: docs/units.md).")
    parser.add_argument("project", help="project directory (pyiron_assyst.storage.Project)")
    parser.add_argument("--run", help="run name (default: the project's only run)")
    parser.add_argument("--stage", help="stage name (default: the run's last stage)")
    parser.add_argument("-f", "--format", required=True, choices=sorted(FORMATS),
                        help="output format")
    parser.add_argument("-o", "--output", help="output file (default: <run>_<stage><suffix>)")
    parser.add_argument("--reference-energies", nargs="+", metavar="EL=EV",
                        help="isolated-atom energies in eV, e.g. Cu=-0.005 Ag=0.002, "
                             "'compute' (with the run's reference calculator config) or "
                             "'none' (default: those the run stored, if any)")
    parser.add_argument("--elements", nargs="+", help="type order of the mtp format")
    add_trust_flag(parser)
    parser.set_defaults(handler=run_export)
    return parser


def parse_reference_energies(values: Sequence[str]) -> dict[str, float]:
    """``["Cu=-0.1", "Ag=0.2"]`` -> ``{"Cu": -0.1, "Ag": 0.2}``.

    Raises
    ------
    ValueError
        For an entry that is not ``symbol=number``.
    """
    from ase.data import atomic_numbers

    energies = {}
    for value in values:
        symbol, sep, number = value.partition("=")
        if not sep or symbol not in atomic_numbers:
            raise ValueError(f"reference energy {value!r} is not SYMBOL=ENERGY (e.g. Cu=-0.1)")
        try:
            energies[symbol] = float(number)
        except ValueError:
            raise ValueError(f"reference energy {value!r}: {number!r} is not a number") from None
    return energies


def _select(project: Any, run: str | None, stage: str | None) -> tuple[str, str]:
    from pyiron_assyst.storage import StorageError

    runs = project.runs()
    if run is None:
        if len(runs) != 1:
            raise StorageError(f"the project has {len(runs)} runs {runs}; choose one with --run",
                               project.path)
        run = runs[0]
    stages = project.stages(run)
    if stage is None:
        if not stages:
            raise StorageError(f"run {run!r} has no stages", project.path)
        stage = stages[-1]
    return run, stage


def _stored_references(project: Any, run: str) -> dict[str, float] | None:
    """The isolated-atom energies a run stored (stage ``isolated_atoms``), else ``None``."""
    from pyiron_assyst.stages.curate import energies_of

    if "isolated_atoms" not in project.stages(run):
        return None
    return energies_of(project.load_stage(run, "isolated_atoms")) or None


def _references(project: Any, run: str, values: Sequence[str] | None,
                structures: Sequence[Any], takes_references: bool, trusted: bool = False,
                ) -> dict[str, float] | None:
    if not values:
        return _stored_references(project, run) if takes_references else None
    if list(values) == ["none"]:
        return None
    if list(values) != ["compute"]:
        return parse_reference_energies(values)
    from pyiron_assyst.cli.trust import require_trust
    from pyiron_assyst.core.config import ConfigError
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.stages.curate import reference_energies

    configs = project.load_configs(run)
    calculator = configs.get("reference", configs.get("calculator"))
    if calculator is None:
        raise ConfigError(f"run {run!r} stores no 'reference' or 'calculator' config; give "
                          "the reference energies as EL=EV")
    require_trust({"reference": calculator}, trusted,
                  f"export --reference-energies compute of run {run!r}")
    elements = sorted({s for a in structures for s in a.get_chemical_symbols()})
    energies, report = reference_energies(elements, calculator, Executor(kind="serial"))
    if report.drops:
        raise ConfigError(f"reference energies could not be computed: {report.summary()}")
    return energies


def run_export(args: argparse.Namespace) -> int:
    """Handler of ``pyiron-assyst export``; returns the exit status (2 for bad input)."""
    from pyiron_assyst.core.config import ConfigError
    from pyiron_assyst.export import FORMATS, TAKES_REFERENCES, ExportError, export
    from pyiron_assyst.storage import Project, StorageError, slug

    try:
        project = Project(args.project, create=False)
        run, stage = _select(project, args.run, args.stage)
        structures = project.load_stage(run, stage)
        references = _references(project, run, args.reference_energies, structures,
                                 args.format in TAKES_REFERENCES, args.trust_project)
        output = Path(args.output or f"{slug(run)}_{slug(stage)}{FORMATS[args.format][1]}")
        result = export(structures, output, args.format, reference_energies=references,
                        elements=args.elements)
    except (StorageError, ExportError, ConfigError, ValueError) as error:
        sys.stderr.write(f"pyiron-assyst export: error: {error}\n")
        return 2
    text = f"wrote {len(structures)} structures of {run}/{stage} to {output} ({args.format})"
    if args.format == "mtp":
        text += "; types: " + " ".join(f"{i}={s}" for i, s in enumerate(result))
    if references:
        text += "; reference energies (eV): " + " ".join(
            f"{s}={e!r}" for s, e in sorted(references.items()))
    sys.stdout.write(text + "\n")
    return 0
