"""The ``pyiron-assyst`` command line.

``pyiron-assyst run`` runs the canonical macro from a TOML settings file
(:mod:`pyiron_assyst.settings`) and/or flags, and writes into the output directory:

- ``training_set.extxyz``: the filtered union of all stages (ASE's extended XYZ);
- ``summary.txt`` and ``summary.json``: structures per stage and drops per reason;
- ``figures/*.png``: volume, energy, distances, space groups, composition, lattice, counts.

Bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError

__all__ = ["build_parser", "main"]

_CALCULATORS = ("emt", "morse", "lj")


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with one sub-command per action."""
    parser = argparse.ArgumentParser(prog="pyiron-assyst", description=(
        "ASSYST training sets for machine-learning interatomic potentials"))
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the whole pipeline", description=(
        "Sample, relax, perturb and filter; write the training set and a summary. Without "
        "arguments: Cu, 1-3 atoms, all space groups, EMT."))
    run.add_argument("settings", nargs="?", help="TOML settings file (see examples/)")
    run.add_argument("--elements", nargs="+", help="element symbols (default: Cu)")
    run.add_argument("--max-atoms", type=int, help="largest number of atoms per cell (default 3)")
    run.add_argument("--min-atoms", type=int, help="smallest number of atoms per cell (default 1)")
    run.add_argument("--calculator", choices=_CALCULATORS, help="ASE calculator (default emt)")
    run.add_argument("--seed", type=int, help="random seed of sampling and perturbations")
    run.add_argument("--workers", type=int, help="parallel worker processes (0: all cores)")
    run.add_argument("--serial", action="store_true", help="run everything in this process")
    run.add_argument("-o", "--output", help="output directory (default assyst-output)")
    return parser


def _resolve(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Path]:
    import dataclasses

    from . import calculators, crystals, executors, settings, workflows

    formulas, configs, output = (None, {}, {})
    if args.settings:
        formulas, configs, output = settings.load_settings(args.settings)
    flags = (args.elements, args.max_atoms, args.min_atoms)
    if formulas is None or any(flag is not None for flag in flags):
        formulas = settings.formulas_from_table({
            "elements": args.elements or ["Cu"],
            "max_atoms": 3 if args.max_atoms is None else args.max_atoms,
            "min_atoms": 1 if args.min_atoms is None else args.min_atoms,
        })
        sample = configs.get("sample_config", crystals.SampleConfig())
        configs["sample_config"] = dataclasses.replace(
            sample, min_atoms=1, max_atoms=max(sum(f.values()) for f in formulas))
    if args.calculator:
        configs["calculator"] = {"emt": calculators.EMT(), "morse": calculators.Morse(),
                                 "lj": calculators.LennardJones()}[args.calculator]
    if args.seed is not None:
        sample = configs.get("sample_config", crystals.SampleConfig())
        configs["sample_config"] = dataclasses.replace(sample, seed=args.seed)
        perturb = configs.get("perturb_config", workflows.DEFAULT_PERTURB)
        configs["perturb_config"] = dataclasses.replace(perturb, seed=args.seed)
    if args.serial:
        configs["executor"] = executors.Executor(kind="serial")
    elif args.workers is not None:
        configs["executor"] = executors.Executor(kind="process", max_workers=args.workers)
    directory = Path(args.output or output.get("directory", "assyst-output"))
    return formulas, configs, directory


def _write(outputs: dict[str, Any], directory: Path) -> str:
    from ase.io import write

    from .workflows import OUTPUTS

    directory.mkdir(parents=True, exist_ok=True)
    write(directory / "training_set.extxyz", outputs["training_set"], format="extxyz")
    reports = [outputs[name] for name in OUTPUTS if name.endswith("_report")]
    lines = [r.summary() for r in reports]
    lines.append(f"training set: {len(outputs['training_set'])} structures")
    text = "\n".join(lines) + "\n"
    (directory / "summary.txt").write_text(text)
    from .plot import write_all

    stages = ("sampled", "volume_relaxed", "relaxed", "perturbed", "training_set")
    write_all({name: outputs[name] for name in stages}, reports, directory / "figures")
    (directory / "summary.json").write_text(json.dumps({
        "training_set": len(outputs["training_set"]),
        "stages": [{"stage": r.stage, "in": r.n_in, "candidates": r.n_candidates,
                    "out": r.n_out, "dropped": r.drop_counts(), "flagged": r.flag_counts(),
                    "wall_time_s": r.wall_time} for r in reports],
    }, indent=2))
    return text


def _run(args: argparse.Namespace) -> int:
    formulas, configs, directory = _resolve(args)
    import pyiron_workflow as pwf

    from .workflows import assyst

    result = pwf.node(assyst).run(formulas=formulas, **configs)
    if result.exception is not None:
        raise result.exception
    text = _write(dict(result.outputs), directory)
    sys.stdout.write(text + f"written to {directory}/\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyiron-assyst``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
    except ConfigError as error:
        sys.stderr.write(f"pyiron-assyst: error: {error}\n")
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
