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

Bad input (settings, flags, a missing or foreign project, a path that cannot be written) exits
with status 2 and a one-line message; Ctrl-C (SIGTERM alike) stops the workers and exits with
status 130 (143), and the structures it cut off are computed when the same command runs again.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from pyiron_assyst.cli._pipeline import StageFailed
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

__all__ = ["COMMANDS", "Terminated", "build_parser", "main"]

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (exit status 143)."""

    status = 128 + signal.SIGTERM


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyiron-assyst``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _terminate)
    if threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGINT) == signal.SIG_IGN):
        # started as a background job of a non-interactive shell (CI runners, `cmd &` in a
        # script), the process inherits SIGINT ignored and Python keeps it so: ^C or
        # `kill -INT` then did nothing and the run went on to the end
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return args.handler(args)
    except (ConfigError, StorageError, OSError) as error:  # bad input or path: no traceback
        message = str(error).replace("\n", " ")
        sys.stderr.write(f"pyiron-assyst: error: {message}\n")
        return 2
    except StageFailed as error:  # the run is saved; its cause is the message
        sys.stderr.write(f"pyiron-assyst: failed: {error}\n")
        return 1
    except KeyboardInterrupt as stop:  # stop the workers now; cut-off work is not a failure
        from pyiron_assyst.execution.executors import shutdown_pools

        if threading.current_thread() is threading.main_thread():
            # a second ^C while the workers stop and the interpreter exits would kill the
            # process by SIGINT (status -2, maybe a traceback) instead of this clean exit
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        shutdown_pools()
        sys.stderr.write("pyiron-assyst: interrupted; finished structures are cached: run the "
                         "same command again to resume\n")
        return getattr(stop, "status", 130)


if __name__ == "__main__":
    sys.exit(main())
