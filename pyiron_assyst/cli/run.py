"""``pyiron-assyst run``: the canonical pipeline from a TOML file and/or flags, into a project.

The output directory (``-o``, default ``assyst-output``) is a project
(:class:`~pyiron_assyst.storage.Project`): the run is saved there with its recipe, configs,
every stage's structures and the reports, next to ``training_set.extxyz``, ``summary.txt`` /
``summary.json`` and ``figures/*.png`` of the latest run. Relaxations and single points are
cached by content in ``<project>/cache``: running the same command again after a kill resumes,
and running with more formulas or perturbations reuses everything already relaxed. Running a
finished run again (same formulas and configs: the same run name) computes nothing: its
outputs are taken from ``<project>/outputs/<run>/`` in about a second (``--overwrite``
computes it again). Every run keeps its outputs in its own folder there; the top-level files
are the latest run's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from pyiron_assyst.cli._outputs import reuse_outputs
from pyiron_assyst.cli._pipeline import (
    content_name,
    execute,
    formulas_from_flags,
    is_complete,
    macro_configs,
)
from pyiron_assyst.storage import Project, StorageError, check_run_name

__all__ = ["add_executor_flags", "add_run_command", "apply_executor_flags", "calculator_by_flag",
           "run_command"]

_CALCULATORS = ("emt", "morse", "lj")


def add_run_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``run`` to the sub-commands."""
    run = subparsers.add_parser("run", help="run the whole pipeline into a project", description=(
        "Sample, relax, perturb, filter, label and curate; save the run in the project "
        "directory and write the training set and a summary there. Without arguments: Cu, "
        "1-3 atoms, all space groups, EMT (relaxations and labels). Running again resumes "
        "from the project's cache."))
    run.add_argument("settings", nargs="?", help="TOML settings file (see examples/)")
    run.add_argument("--elements", nargs="+", help="element symbols (default: Cu)")
    run.add_argument("--max-atoms", type=int, help="largest number of atoms per cell (default 3)")
    run.add_argument("--min-atoms", type=int, help="smallest number of atoms per cell (default 1)")
    run.add_argument("--calculator", choices=_CALCULATORS,
                     help=f"calculator of the relaxations (default emt): {_calculator_help()}")
    run.add_argument("--reference", choices=_CALCULATORS,
                     help="reference calculator of the labels (default: the --calculator; "
                          "any calculator config through the settings' [label] table)")
    run.add_argument("--seed", type=int, help="random seed of sampling and perturbations")
    add_executor_flags(run)
    run.add_argument("-o", "--output", help="project directory (default assyst-output)")
    run.add_argument("--name", help="run name (default: run-<hash of the settings>)")
    run.add_argument("--overwrite", action="store_true",
                     help="compute a finished run again and replace it (a finished run of "
                          "the same settings is otherwise reused, one of the same --name "
                          "refused)")
    run.add_argument("--retry-failed", action="store_true",
                     help="compute again structures whose cached result is a failure")
    run.set_defaults(handler=run_command)
    return run


def add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--serial``, ``--task-timeout`` and ``--no-figures``."""
    parser.add_argument("--workers", type=int, help="parallel worker processes (0: all cores)")
    parser.add_argument("--serial", action="store_true", help="run everything in this process")
    parser.add_argument("--task-timeout", type=float,
                        help="time limit per structure in s (a structure over it is dropped)")
    parser.add_argument("--no-figures", action="store_true", help="do not draw figures/*.png")


def apply_executor_flags(executor: Any, args: argparse.Namespace) -> Any:
    """The executor config changed as the flags say."""
    from pyiron_assyst.execution.executors import Executor

    if args.serial:
        executor = Executor(kind="serial", task_timeout=executor.task_timeout)
    elif args.workers is not None:
        executor = dataclasses.replace(executor, kind="process", max_workers=args.workers)
    if args.task_timeout is not None:
        executor = dataclasses.replace(executor, task_timeout=args.task_timeout)
    return executor


def _calculator_help() -> str:
    from pyiron_assyst.calculators import EMT, LennardJones, Morse

    morse, lj = Morse(), LennardJones()
    return (f"emt is ASE's EMT ({', '.join(sorted(EMT().supported_elements()))}); morse is "
            f"Morse(epsilon={morse.epsilon:g} eV, r0={morse.r0:g} Å, rho0={morse.rho0:g}); lj is "
            f"LennardJones(sigma={lj.sigma:g} Å, epsilon={lj.epsilon:g} eV, rc=3 sigma); other "
            "parameters and any ASE calculator go in the settings' [calculator] and [label] "
            "tables")


def calculator_by_flag(name: str) -> Any:
    """The calculator config of ``--calculator`` / ``--reference`` ``name`` (emt, morse, lj)."""
    from pyiron_assyst import calculators

    return {"emt": calculators.EMT(), "morse": calculators.Morse(),
            "lj": calculators.LennardJones()}[name]


def _resolve(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Path]:
    from pyiron_assyst.cli import settings
    from pyiron_assyst.stages import sample as crystals
    from pyiron_assyst.workflow.pipeline import DEFAULT_PERTURB

    formulas, configs, output = (None, {}, {})
    if args.settings:
        formulas, configs, output = settings.load_settings(args.settings)
    formulas = formulas_from_flags(args, formulas, configs)
    if args.calculator:
        configs["calculator"] = calculator_by_flag(args.calculator)
    if args.reference:
        configs["reference"] = calculator_by_flag(args.reference)
    if args.seed is not None:
        sample = configs.get("sample_config", crystals.SampleConfig())
        configs["sample_config"] = dataclasses.replace(sample, seed=args.seed)
        perturb = configs.get("perturb_config", DEFAULT_PERTURB)
        configs["perturb_config"] = dataclasses.replace(perturb, seed=args.seed)
    configs = macro_configs(configs)
    configs["executor"] = apply_executor_flags(configs["executor"], args)
    preflight(formulas, configs)
    directory = Path(args.output or output.get("directory", "assyst-output"))
    return formulas, configs, directory


def preflight(formulas: Any, configs: dict[str, Any]) -> None:
    """Refuse, before any work, a calculator that cannot compute the formulas' elements.

    Raises
    ------
    ConfigError
        Naming the calculator, the elements it lacks and those it knows.
    """
    from pyiron_assyst.core.config import ConfigError

    checked = [(f"[{'label' if role == 'reference' else role}]", configs[role])
               for role in ("calculator", "reference")]
    for step in ("volume_relax", "full_relax"):  # a relaxation's own calculators
        for key in ("calculator", "pre_relax"):
            own = getattr(configs.get(step), key, None)
            if own is not None:
                checked.append((f"[{step}] {key}", own))
    for where, calculator in checked:
        try:
            calculator.check_elements(formulas.elements)
        except ConfigError as error:
            raise ConfigError(f"{where} {error}") from None


def _same_version(project: Project, run: str) -> bool:
    """Whether ``run`` was computed by this version of the package (else it is computed
    again, from the cache, rather than reused)."""
    from importlib import metadata

    return project.run_info(run).get("versions", {}).get("pyiron_assyst") == metadata.version(
        "pyiron_assyst")


def run_command(args: argparse.Namespace) -> int:
    """Handler of ``run``."""
    formulas, configs, directory = _resolve(args)
    name = check_run_name(args.name or content_name(formulas, configs))  # before any mkdir
    project = Project(directory)
    finished = name in project.runs() and is_complete(project, name)
    reusable = finished and _same_version(project, name)
    if args.name and finished and not args.overwrite:
        raise StorageError(f"run {name!r} exists (pass --overwrite to replace it)", project.path)
    if reusable and not (args.overwrite or args.retry_failed):
        text = reuse_outputs(project, name, figures=not args.no_figures)
        if text is not None:
            sys.stdout.write(text + f"run {name!r} is finished: nothing computed, its outputs "
                             f"are in {directory}/ (--overwrite computes it again)\n")
            return 0
    _, text = execute(project, name, formulas, configs, args.retry_failed, not args.no_figures)
    sys.stdout.write(text + f"saved as run {name!r} in {directory}/\n")
    return 0
