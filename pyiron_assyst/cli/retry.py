"""``pyiron-assyst retry-failed``: compute again the structures of a run that failed.

The run's stored formulas and configs are run once more with ``retry_failed``: every relaxation
that finished is answered from the project's cache, those whose cached result is a failure
(error, NaN, timeout) are computed again, and so is whatever they now feed downstream. The run
is saved again under its name. A run made by ``pyiron-assyst label`` labels its source run's
stage again (its stored ``source``). ``--task-timeout``, ``--workers`` and ``--serial`` change
how it runs (e.g. a longer limit for structures that timed out), not the science.
A run whose stored calculator, executor or callables could start programs is only run again
with ``--trust-project`` (see :mod:`pyiron_assyst.cli.trust`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pyiron_assyst.cli._pipeline import execute, is_complete, latest_run
from pyiron_assyst.cli._text import description
from pyiron_assyst.cli.label import relabel
from pyiron_assyst.cli.run import add_executor_flags, apply_executor_flags
from pyiron_assyst.cli.trust import add_trust_flag, require_trust
from pyiron_assyst.storage import Project

__all__ = ["add_retry_failed_command", "retry_failed_command"]


def add_retry_failed_command(subparsers: argparse._SubParsersAction
                             ) -> argparse.ArgumentParser:
    """Add ``retry-failed`` to the sub-commands."""
    retry = subparsers.add_parser("retry-failed", help="compute failed structures again",
                                  description=description(__doc__))
    retry.add_argument("project", nargs="?", default="assyst-output",
                       help="project directory (default assyst-output)")
    retry.add_argument("--run", help="the run (default: the latest)")
    add_executor_flags(retry)
    add_trust_flag(retry)
    retry.set_defaults(handler=retry_failed_command)
    return retry


def _failures(project: Project, run: str) -> int:
    return sum(len(r.failures) for r in project.load_reports(run).values())


def retry_failed_command(args: argparse.Namespace) -> int:
    """Handler of ``retry-failed``."""
    project = Project(Path(args.project), create=False)
    run = latest_run(project, args.run)
    configs = project.load_configs(run)
    formulas = configs.pop("formulas")
    configs["executor"] = apply_executor_flags(configs["executor"], args)
    require_trust(configs, args.trust_project, f"retry-failed of run {run!r}")
    before = _failures(project, run)
    if before == 0 and is_complete(project, run):
        sys.stdout.write(f"run {run!r}: no failed structures; nothing to retry\n")
        return 0
    source = configs.pop("source", None)
    if source is not None:  # a run of ``pyiron-assyst label``: label its source again
        configs = {k: configs[k] for k in ("reference", "curation", "executor")}
        _, text = relabel(project, source.run, source.stage, run, configs, retry_failed=True,
                          figures=not args.no_figures)
    else:
        _, text = execute(project, run, formulas, configs, retry_failed=True,
                          figures=not args.no_figures)
    after = _failures(project, run)
    sys.stdout.write(text + f"run {run!r}: {before} failed structures before, {after} now\n")
    return 0
