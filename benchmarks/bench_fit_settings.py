"""Screen fit settings of the quick case on one labelled set: held-out error and cluster curves.

Takes a labelled set written by ``pyiron-assyst fit`` (``training_set.extxyz``), holds the same
20 % of its lineages out as that command (``--seed``: that command's seed), fits each variant of
the quick case's fit settings (:func:`pyiron_assyst.cli.fit.quick_fit_config` with the
variant's fields replaced)
and prints one JSON line per variant: training structures, fit time (s), held-out energy MAE in
the 1 eV/atom window (meV/atom) and force RMSE (eV/Å), and the largest dimer and trimer errors
(meV/atom) over 0.7-1.0 and 1.2-1.5 × the reference's nearest-neighbour distance (EMT Cu).
This is how the quick case's settings were chosen (docs/fitting.md).

    pyiron-assyst fit -o quick                         # makes quick/training_set.extxyz
    python benchmarks/bench_fit_settings.py quick/training_set.extxyz \\
        '{"c3w3e200": {"correlation": 3, "cluster_weight": 3.0, "epochs": 200}}'
    # --drop-below 1.8: without dimers and trimers shorter than 1.8 Å
    pyiron-assyst fit --seed 2 -o quick2 && python benchmarks/bench_fit_settings.py \\
        quick2/training_set.extxyz '{"e5f1": {"cluster_weight": 5.0}}' --seed 2 --md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np


def _cluster_errors(model: object, nearest: float) -> list[int]:
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.fitting.stability import cluster_curve
    from pyiron_assyst.fitting.transferability import _calculator_source

    model_source, reference = _calculator_source(model), _calculator_source(EMT())
    fractions = (0.7, 0.8, 0.9, 1.0, 1.2, 1.5)
    out = []
    for symbols in (("Cu", "Cu"), ("Cu",) * 3):
        curve = cluster_curve(symbols, [f * nearest for f in fractions], model_source,
                              reference)
        errors = 1000 * np.abs(curve["model"] - curve["reference"])
        out += [int(errors[:4].max()), int(errors[4:].max())]
    return out


def _md_errors(model: object) -> dict[str, float]:
    """The report's MD checks of the vacancy cell: 10 ps at 1500 K and 2 ps at 2000 K (shortest
    distance in Å, largest |E_model - E_ref| in meV/atom)."""
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.fitting.transferability import TransferabilityConfig, transferability

    config = TransferabilityConfig(
        stability_runs=(("vacancy", 1500.0, 10.0), ("vacancy", 2000.0, 2.0)),
        cluster_fractions=())
    result = transferability(model, EMT(), (), config)
    return {check.name: round(float(check.value), 2) for check in result.checks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("training_set", type=Path)
    parser.add_argument("variants", help='JSON: {"name": {FitConfig field: value, ...}}')
    parser.add_argument("--drop-below", type=float, default=0.0,
                        help="leave out dimers and trimers with a pair closer than this (Å)")
    parser.add_argument("--work", type=Path, default=Path("fit-settings"))
    parser.add_argument("--md", action="store_true",
                        help="also run the report's MD checks (vacancy cell, 10 ps at 1500 K, "
                             "2 ps at 2000 K; minutes per variant)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the set's `pyiron-assyst fit` run: the held-out lineages "
                             "and the fit (default 0)")
    args = parser.parse_args(argv)
    from ase.io import read

    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.cli.fit import quick_fit_config
    from pyiron_assyst.fitting.mace import fit, split_by_lineage
    from pyiron_assyst.fitting.transferability import (
        TransferabilityResult,
        _calculator_source,
        _errors,
    )

    def short(atoms) -> bool:
        return atoms.info.get("short_range") in ("dimer", "trimer") and (
            atoms.get_all_distances()[np.triu_indices(len(atoms), 1)].min() < args.drop_below)

    from pyiron_assyst.cli.fit import use_torch_threads

    use_torch_threads(1)  # the models are evaluated here; one thread, as the fits
    labelled = [a for a in read(args.training_set, ":") if not short(a)]
    kept, held = split_by_lineage(labelled, 0.2, args.seed)
    for name, fields in json.loads(args.variants).items():
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        config = dataclasses.replace(quick_fit_config(seed=args.seed), **fields)
        start = time.perf_counter()
        model, report = fit(kept, config, None, args.work)
        seconds = time.perf_counter() - start
        result = TransferabilityResult()
        _errors("held-out", held, _calculator_source(EMT()), _calculator_source(model), result,
                window=1.0)
        window = "held-out within 1 eV/atom"
        line = {"name": name, **{k: str(v) for k, v in fields.items()}, "n_train": report.n_train,
                "fit_s": round(seconds),
                "held_mae": round(result.value(f"{window}: energy MAE").model, 2),
                "held_force_rmse": round(result.value(f"{window}: force RMSE").model, 4),
                "dimer_0.7-1.0/1.2-1.5, trimer_0.7-1.0/1.2-1.5":
                    _cluster_errors(model, 3.59 / math.sqrt(2))}
        if args.md:
            line.update(_md_errors(model))
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
