"""The ``pyiron-assyst`` command line.

Sub-commands (each in its own module of :mod:`pyiron_assyst.cli`):

- ``run``: the canonical pipeline from a TOML settings file (:mod:`pyiron_assyst.cli.settings`)
  and/or flags, saved as a run of a project directory (``-o``), which also receives
  ``training_set.extxyz`` (labelled and curated), ``summary.txt`` / ``summary.json`` and
  ``figures/*.png``;
- ``label``: label a stored run's training set with another reference calculator into a new
  run of the same project;
- ``status``: each run's progress and failures (also of a run in progress or killed);
- ``retry-failed``: compute the failed structures of a run again;
- ``show``: counts, configs, the lineage of one structure, the table of a stage;
- ``plan``: structures and calculations per stage and core-hours, before anything runs;
- ``export``: a stored stage in the format a fitting code reads (extxyz, MACE/NequIP extxyz,
  pacemaker, MTP, pyiron_potentialfit);
- ``fit``: sample to labels with EMT, a MACE fit, and its transferability report (extra
  ``fit``).

Bad input (settings, flags, a missing or foreign project) exits with status 2 and a one-line
message.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pyiron_assyst.cli.export import add_export_command
from pyiron_assyst.cli.fit import add_fit_command
from pyiron_assyst.cli.label import add_label_command
from pyiron_assyst.cli.plan import add_plan_command
from pyiron_assyst.cli.retry import add_retry_failed_command
from pyiron_assyst.cli.run import add_run_command
from pyiron_assyst.cli.show import add_show_command
from pyiron_assyst.cli.status import add_status_command
from pyiron_assyst.core.config import ConfigError
from pyiron_assyst.storage import StorageError

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = (add_plan_command, add_run_command, add_label_command, add_status_command,
            add_retry_failed_command, add_show_command, add_export_command, add_fit_command)
"""``add_<name>_command(subparsers)`` of every sub-command, in help order."""


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with one sub-command per action."""
    parser = argparse.ArgumentParser(prog="pyiron-assyst", description=(
        "ASSYST training sets for machine-learning interatomic potentials"))
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyiron-assyst``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, StorageError) as error:
        message = str(error).replace("\n", " ")
        sys.stderr.write(f"pyiron-assyst: error: {message}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
