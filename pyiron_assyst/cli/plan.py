"""``pyiron-assyst plan``: structures per stage, calculations and core-hours, before a run.

Reads the same settings as ``pyiron-assyst run`` (a TOML file and/or ``--elements``,
``--min-atoms``, ``--max-atoms``) and prints :func:`pyiron_assyst.workflow.plan.plan`'s table, or
its
JSON with ``--json``. Nothing is computed: sampling is counted exactly with pyxtal's
compatibility check, the later stages under the assumptions given by the flags; a ``[select]``
table that keeps less than the whole pool adds a select stage and scales the labels. Bad input exits
with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pyiron_assyst.cli._pipeline import formulas_from_flags
from pyiron_assyst.core.config import ConfigError

__all__ = ["add_plan_command", "run_plan"]

_ASSUMPTION_FLAGS = {
    "volume_relax_calls": ("--volume-relax-calls", float,
                           "expected force calls per volume relaxation (default 10)"),
    "full_relax_calls": ("--full-relax-calls", float,
                         "expected force calls per full relaxation (default 30)"),
    "relax_failure": ("--relax-failure", float,
                      "expected fraction of failed relaxations per stage (default 0)"),
    "sample_filter_pass": ("--sample-filter-pass", float,
                           "fraction of sampled cells kept by the sample filter (default 1)"),
    "perturb_pass": ("--perturb-pass", float,
                     "fraction of perturbed cells passing their filter (default 1)"),
    "final_filter_pass": ("--final-filter-pass", float,
                          "fraction of all structures kept by the final filter (default 1)"),
}


def add_plan_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``plan`` on the sub-parsers of the ``pyiron-assyst`` parser; returns it."""
    parser = subparsers.add_parser("plan", help="count structures and core-hours before a run",
                                   description=(
        "Report how many structures each stage will produce (exact for sampling, expected for "
        "the rest), the number of calculations and their cost in core-hours. Nothing is "
        "computed."))
    parser.add_argument("settings", nargs="?", help="TOML settings file (as for run)")
    parser.add_argument("--elements", nargs="+", help="element symbols (default: Cu)")
    parser.add_argument("--max-atoms", type=int, help="largest number of atoms per cell "
                        "(default 3)")
    parser.add_argument("--min-atoms", type=int, help="smallest number of atoms per cell "
                        "(default 1)")
    parser.add_argument("--cost-per-calculation", type=float, default=1.0, metavar="CORE_HOURS",
                        help="core-hours of one calculation, a relaxation step or a single "
                        "point (default 1)")
    parser.add_argument("--cores", type=int, help="cores per calculation (default: the "
                        "settings' executor cores, else 1)")
    for name, (flag, kind, text) in _ASSUMPTION_FLAGS.items():
        parser.add_argument(flag, type=kind, dest=name, help=text)
    parser.add_argument("--reuse-relaxation-labels", action="store_true", help=(
        "relaxed structures keep their relaxation single points (the default when the "
        "reference calculator of the labels is the relaxation calculator)"))
    parser.add_argument("--no-label", action="store_true", help="no labelling stage")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run_plan)
    return parser


def _formulas_and_configs(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from pyiron_assyst.cli import settings

    formulas, configs = None, {}
    if args.settings:
        formulas, configs, _ = settings.load_settings(args.settings)
    formulas = formulas_from_flags(args, formulas, configs)
    return formulas, configs


def _assumptions(args: argparse.Namespace, configs: dict[str, Any]) -> Any:
    from pyiron_assyst.workflow.plan import PlanAssumptions

    given = {name: getattr(args, name) for name in _ASSUMPTION_FLAGS
             if getattr(args, name) is not None}
    relabel = configs["reference"] != configs["calculator"] and not args.reuse_relaxation_labels
    return PlanAssumptions(relabel_relaxed=relabel, **given)


def _plan(args: argparse.Namespace) -> Any:
    from pyiron_assyst.cli._pipeline import macro_configs
    from pyiron_assyst.workflow.plan import plan

    formulas, given = _formulas_and_configs(args)
    configs = macro_configs(given)  # the pipeline's defaults for what the settings omit
    cores = args.cores if args.cores is not None else configs["executor"].cores
    return plan(formulas, configs["sample_config"], configs["perturb_config"],
                configs["volume_relax"], configs["full_relax"], _assumptions(args, configs),
                cost_per_calculation_core_hours=args.cost_per_calculation,
                cores_per_calculation=cores, label=not args.no_label,
                select_config=configs["select_config"],
                short_range_config=configs["short_range_config"])


def run_plan(args: argparse.Namespace) -> int:
    """Print the plan of the run that ``args`` describes; 0 on success, 2 on bad input."""
    try:
        result = _plan(args)
    except ConfigError as error:
        sys.stderr.write(f"pyiron-assyst plan: error: {error}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(result.summary() + "\n")
    return 0
