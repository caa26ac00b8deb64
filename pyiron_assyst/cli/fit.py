"""``pyiron-assyst fit``: generate, label, fit and report in one command.

sample → relax → perturb → filter (the canonical macro) → label with the reference calculator →
hold whole lineages out → fit (MACE) on the rest → ``--explore-rounds`` rounds of active learning
(the model's own MD explored, labelled and trained on) → transferability report against the
reference. Writes into the output directory ``training_set.extxyz`` (labelled),
``held_out.extxyz``, ``explored.extxyz`` (the labelled snapshots), the fits' ``fit_<key>/``
(model, log, data), ``summary.txt`` and ``report/`` (table, pictures).

Wire it into the parser with :func:`add_fit_command`; the parsed arguments carry the handler
as ``args.handler`` (call ``args.handler(args)``, which returns the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ase import Atoms

__all__ = ["add_fit_command", "default_max_atoms", "formula_grid", "label_structures",
           "quick_fit_config", "run_fit", "use_torch_threads"]

_REFERENCES = ("emt", "morse", "lj")


def add_fit_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``fit`` sub-command to ``subparsers`` (from ``add_subparsers``); return it."""
    parser = subparsers.add_parser("fit", help="generate, label, fit a potential and report",
                                   description=(
        "Sample, relax, perturb and filter a training set of one or more elements (every "
        "composition of 1 to --max-atoms atoms), add the short-range structures, label it with "
        "the reference, fit a MACE potential on it (whole lineages held out) and compare the "
        "potential with the reference: phases, elastic constants, defects, the potential's "
        "own MD, dimers and trimers, the held-out structures per composition and, for two or "
        "more elements, formation energies of alloys. The defaults are a quick case (Cu, 1-2 "
        "atoms (1-3 for two or more elements), every third space group, a small model, 200 "
        "epochs of batches of 16 with an exponential moving average of the weights, then one "
        "round of active learning: the model's own MD labelled and 40 more epochs on it)."))
    parser.add_argument("--elements", "--element", nargs="+", default=["Cu"],
                        dest="elements", metavar="SYMBOL",
                        help="chemical symbols (default Cu; e.g. --elements Cu Ag)")
    parser.add_argument("--max-atoms", type=int, default=None,
                        help="atoms per cell (default 2 for one element, 3 for two or more: "
                             "with 2 the alloys' formation energies missed EMT's by 64-130 "
                             "meV/atom, with 3 by at most 27 on the seeds measured)")
    parser.add_argument("--group-step", type=int, default=3,
                        help="sample every n-th space group, 1, 1+n, ... (default 3; 1: all)")
    parser.add_argument("--reference", choices=_REFERENCES, default="emt",
                        help="reference calculator that labels the set (default emt)")
    parser.add_argument("--epochs", type=int, default=200,
                        help="training epochs (default 200)")
    parser.add_argument("--channels", type=int, default=16, help="MACE channels (default 16)")
    parser.add_argument("--r-max", type=float, default=4.5, help="cutoff in Å (default 4.5)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                        help="floating-point type of training and model (default float64; "
                             "float32 trains ~1.2x faster on CPUs)")
    parser.add_argument("--held-out", type=float, default=0.2,
                        help="fraction of lineages held out of the fit, of each composition "
                             "on its own (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the training (default 1: on a loaded 2-core "
                             "host 2 threads made an epoch 10-20 times slower)")
    parser.add_argument("--workers", type=int, default=0,
                        help="worker processes of relax/label (0: all cores)")
    parser.add_argument("--md-time", type=float, default=None, metavar="PS",
                        help="time of every MD run the report drives with the potential, in "
                             "ps (default: 10 ps at 1500 K and 2 ps at 600 and 2000 K in the "
                             "vacancy cell, 2 ps at 1500 K in the slab)")
    parser.add_argument("--explore-rounds", type=int, default=1, metavar="N",
                        help="rounds of active learning after the first fit: MD driven by the "
                             "model from the set's minima, snapshots labelled by the reference "
                             "and added, the model trained on (default 1: met the MD target at "
                             "1500 K on five seeds of five, round 0 on three; 0: the first "
                             "fit is the model; docs/fitting.md)")
    parser.add_argument("--refit-epochs", type=int, default=40, metavar="N",
                        help="epochs each round trains the previous model on the set and the "
                             "labelled snapshots (default 40)")
    parser.add_argument("--fresh-refit", action="store_true",
                        help="each round fits a new model for --epochs instead (5-8 times "
                             "slower, no better on the five seeds measured)")
    parser.add_argument("--explore-min-atoms", type=int, default=None, metavar="N",
                        help="atoms of the cells the exploration's MD runs in: each start is "
                             "repeated to at least N (default 8)")
    parser.add_argument("--explore-surfaces", action="store_true",
                        help="each round also runs the model's MD in a slab of every start "
                             "(8 Å of vacuum; twice the snapshots): over five seeds it cut the "
                             "slabs' energy error from 21 to 3 meV/atom, but one seed's trimer "
                             "then failed the report (docs/fitting.md); off by default")
    parser.add_argument("--explored-weights", type=float, nargs=2, default=None,
                        metavar=("ENERGY", "FORCES"),
                        help="weights of the explored snapshots' energies and forces in the "
                             "loss (default 1 1, like every other structure)")
    parser.add_argument("-o", "--output", default="assyst-fit", help="output directory")
    parser.set_defaults(handler=run_fit)
    return parser


def _reference(name: str):  # -> CalculatorConfig
    from pyiron_assyst.calculators import EMT, LennardJones, Morse

    return {"emt": EMT(), "morse": Morse(), "lj": LennardJones()}[name]


def label_structures(structures: Sequence[Atoms], reference, executor,
                     ) -> tuple[list[Atoms], Any]:
    """Label with :func:`pyiron_assyst.stages.label.label`, or, where that stage is not available,
    with a plain single point per structure
    (:func:`pyiron_assyst.calculators.evaluation.evaluate`)."""
    try:
        from pyiron_assyst.stages.label import label
    except ImportError:
        return _label_by_evaluation(structures, reference)
    return label(list(structures), reference, executor)


def _label_by_evaluation(structures: Sequence[Atoms], reference) -> tuple[list[Atoms], Any]:
    from pyiron_assyst.calculators.evaluation import evaluate
    from pyiron_assyst.core.report import Drop, StageReport

    start, labelled, drops = time.perf_counter(), [], []
    for atoms in structures:
        outcome = evaluate(atoms, reference)
        if outcome.ok:
            labelled.append(outcome.value)
        else:
            drops.append(Drop(atoms.info.get("uuid", ""), outcome.reason, outcome.detail))
    return labelled, StageReport("label", len(structures), len(structures), len(labelled),
                                 tuple(drops), wall_time=time.perf_counter() - start)


def default_max_atoms(elements: Sequence[str]) -> int:
    """Atoms per cell of the quick case: 2 for one element, 3 for two or more (cells of two
    atoms give an alloy one mixed composition, and its formation energies fail;
    docs/fitting.md, "The quick binary case")."""
    return 2 if len(elements) == 1 else 3


def formula_grid(elements: Sequence[str], max_atoms: int):  # -> Formulas
    """Every composition of ``elements`` with 1 to ``max_atoms`` atoms (counts of the first
    element outermost: Cu, Ag and 2 atoms give Ag, Ag2, Cu, CuAg, Cu2)."""
    from pyiron_assyst.stages.sample import Formulas

    return Formulas.range(tuple(elements), 0, max_atoms + 1).trim(1, max_atoms)


def _generate(args: argparse.Namespace, reference, executor) -> tuple[list[Atoms], list[str]]:
    import dataclasses

    import pyiron_workflow as pwf

    from pyiron_assyst.cli._pipeline import run_here
    from pyiron_assyst.stages.sample import SampleConfig
    from pyiron_assyst.workflow.macro import DEFAULT_PERTURB, OUTPUTS, assyst

    formulas = formula_grid(args.elements, args.max_atoms)
    result = run_here(
        pwf.node(assyst), formulas=formulas, sample_config=SampleConfig(
            spacegroups=tuple(range(1, 231, args.group_step)), max_atoms=args.max_atoms,
            seed=args.seed),
        perturb_config=dataclasses.replace(DEFAULT_PERTURB, seed=args.seed),
        calculator=reference, executor=executor)
    if result.exception is not None:
        raise result.exception
    outputs = dict(result.outputs)
    lines = [outputs[name].summary() for name in OUTPUTS if name.endswith("_report")
             and name != "curate_report"]
    # the labelled set before curation: the set the fit's documented numbers were measured on
    return outputs["labelled"], lines


def quick_fit_config(epochs: int = 200, channels: int = 16, r_max: float = 4.5,
                     batch_size: int = 16, dtype: str = "float64", seed: int = 0,
                     threads: int = 1):  # -> FitConfig
    """The fit of the quick case (``pyiron-assyst fit``'s defaults; the benchmarks use it too):
    a small invariant MACE model (correlation 3, radial MLP 32 × 32) with an exponential moving
    average of the weights, ZBL, the isolated atoms' E0s and the short-range clusters' energies
    weighted 10 times, their forces once (chosen from measurements, docs/fitting.md)."""
    from pyiron_assyst.fitting.fit_config import FitConfig

    return FitConfig(epochs=epochs, num_channels=channels, r_max=r_max, correlation=3,
                     radial_mlp=(32, 32), batch_size=batch_size, ema_decay=0.99,
                     default_dtype=dtype, seed=seed, threads=threads, cluster_weight=10.0,
                     cluster_forces_weight=1.0)


def use_torch_threads(threads: int) -> None:
    """Evaluate torch models in this process with ``threads`` intra-op threads. torch takes
    every core by default; on a loaded 2-core host its spinning threads made one MACE force
    call of 31 atoms take 1.0-1.4 s instead of 0.16-0.28 s with one thread (measured with four
    other jobs running)."""
    import torch

    torch.set_num_threads(threads)


FIT_EXTRA = ("torch", "mace")
"""Modules the fit needs, from the ``fit`` extra."""

INSTALL_FIT = "pip install torch==2.13.0 && pip install 'pyiron_assyst[fit]'"


def missing_fit_modules() -> list[str]:
    """The modules of the ``fit`` extra that cannot be imported here."""
    missing = []
    for name in FIT_EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds subprocess.run, which then kills the training


def run_fit(args: argparse.Namespace) -> int:
    """Run the whole loop with the parsed arguments; write everything into ``args.output``.

    Checks the reference's elements and the ``fit`` extra before any work (exit status 2 and
    the reason, or the install line). SIGTERM stops the command like Ctrl-C: the training
    process goes with it.
    """
    from pyiron_assyst.core.config import require

    reference = _reference(args.reference)
    require(len(set(args.elements)) == len(args.elements), "fit", "--elements",
            "distinct chemical symbols", args.elements)
    reference.check_elements(list(args.elements))  # before any work, as run and label do
    missing = missing_fit_modules()
    if missing:
        print(f"pyiron-assyst fit: needs {', '.join(missing)} from the 'fit' extra; install it "
              f"with: {INSTALL_FIT}", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    import dataclasses

    from ase.io import write

    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.fitting.split import split_by_lineage
    from pyiron_assyst.fitting.transferability import (
        TransferabilityConfig,
        transferability,
        write_report,
    )

    if args.max_atoms is None:
        args.max_atoms = default_max_atoms(args.elements)
    require(args.max_atoms >= 1, "fit", "--max-atoms", "an integer >= 1", args.max_atoms)
    require(args.group_step >= 1, "fit", "--group-step", "an integer >= 1", args.group_step)
    require(args.explore_rounds >= 0, "fit", "--explore-rounds", "an integer >= 0",
            args.explore_rounds)
    require(0 < args.held_out < 1, "fit", "--held-out", "in (0, 1)", args.held_out)
    require(args.refit_epochs >= 1, "fit", "--refit-epochs", "an integer >= 1",
            args.refit_epochs)
    require(args.explore_min_atoms is None or args.explore_min_atoms >= 1, "fit",
            "--explore-min-atoms", "an integer >= 1", args.explore_min_atoms)
    require(args.explored_weights is None or min(args.explored_weights) >= 0, "fit",
            "--explored-weights", "two numbers >= 0 (energy, forces)", args.explored_weights)
    config = quick_fit_config(epochs=args.epochs, channels=args.channels, r_max=args.r_max,
                              batch_size=args.batch_size, dtype=args.dtype, seed=args.seed,
                              threads=args.threads)
    refit_config, explore_config = _active_learning_configs(args, config)
    require(args.md_time is None or args.md_time > 0, "fit", "--md-time", "> 0 ps",
            args.md_time)
    report_config = TransferabilityConfig(elements=tuple(args.elements), seed=args.seed)
    if args.md_time is not None:
        report_config = dataclasses.replace(report_config, stability_runs=tuple(
            (cell, temperature, args.md_time)
            for cell, temperature, _ in report_config.stability_runs))
    output = Path(args.output)
    executor = Executor(kind="process", max_workers=args.workers)
    output.mkdir(parents=True, exist_ok=True)
    structures, lines = _generate(args, reference, executor)
    labelled, label_report = label_structures(structures, reference, executor)
    write(output / "training_set.extxyz", labelled, format="extxyz")
    kept, held_out = split_by_lineage(labelled, args.held_out, args.seed)
    write(output / "held_out.extxyz", held_out, format="extxyz")
    lines += [label_report.summary(), f"held out: {len(held_out)} structures"]
    model = _fit_and_refine(args, kept, reference, config, refit_config, explore_config,
                            executor, lines)
    use_torch_threads(args.threads)  # the report evaluates the model here, as many as the fit
    result = transferability(model, reference, held_out, report_config)
    write_report(result, output / "report")
    lines += [f"model: {model.model_path}",
              f"One fit (seed {args.seed}): another seed gives other numbers; how far apart, for "
              f"the quick case over seeds 0-4, is in docs/fitting.md (active learning)."]
    text = "\n".join(lines) + "\n\n" + (output / "report" / "transferability.md").read_text()
    (output / "summary.txt").write_text(text)
    sys.stdout.write(text + f"written to {output}/\n")
    return 0


def _active_learning_configs(args: argparse.Namespace, config):  # -> (FitConfig, ExploreConfig)
    """The refits' config (``config`` with ``--explored-weights``) and the exploration's
    (``--explore-min-atoms``, ``--explore-surfaces``, the fit's threads and seed), built before
    any work so that a bad value stops the command at once."""
    import dataclasses

    from pyiron_assyst.stages.explore import ExploreConfig

    explore_config = ExploreConfig(threads=args.threads, seed=args.seed)
    if args.explore_surfaces:
        explore_config = dataclasses.replace(explore_config, surfaces=True)
    if args.explore_min_atoms is not None:
        explore_config = dataclasses.replace(explore_config, min_atoms=args.explore_min_atoms)
    if args.explored_weights is None:
        return config, explore_config
    return (dataclasses.replace(config, explored_weights=tuple(args.explored_weights)),
            explore_config)


def _fit_and_refine(args: argparse.Namespace, kept: list[Atoms], reference, config,
                    refit_config, explore_config, executor,
                    lines: list[str]):  # -> MaceModel
    """The first fit on ``kept`` with ``config``, then ``--explore-rounds`` rounds of
    active learning (:func:`pyiron_assyst.fitting.active.refine`) whose refits use
    ``refit_config`` (the snapshots' weights apply where there are snapshots, so the first fit
    stays the one without active learning); the labelled snapshots go to
    ``explored.extxyz`` (when there was a round), a line per step to ``lines``."""
    from ase.io import write

    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.fitting.active import refine
    from pyiron_assyst.fitting.mace import fit

    output = Path(args.output)
    model, fit_report = fit(kept, config, Executor(kind="serial"), output)
    lines.append(fit_report.summary())
    model, training, rounds = refine(model, kept, reference, refit_config, explore_config,
                                     args.explore_rounds, executor, output,
                                     continue_epochs=None if args.fresh_refit
                                     else args.refit_epochs)
    lines += [line for done in rounds for line in done.summary()]
    if rounds:
        write(output / "explored.extxyz", training[len(kept):], format="extxyz")
    return model


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m pyiron_assyst.cli.fit``) until it is wired in."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    parser = argparse.ArgumentParser(prog="pyiron-assyst")
    add_fit_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fit", *(sys.argv[1:] if argv is None else argv)])
    from pyiron_assyst.core.config import ConfigError

    try:
        return args.handler(args)
    except ConfigError as error:
        sys.stderr.write(f"pyiron-assyst: error: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
