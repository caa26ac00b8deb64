"""DFT force calls saved by relaxing with a universal potential first (CHGNet), measured with GPAW.

The same sampled cells (``examples/al_gpaw.toml``'s sampling: Al, 1-2 atoms, twelve space
groups, aspect-ratio filter) are relaxed twice with the settings of that example:

(a) **DFT only**: volume relaxation, then full relaxation, both with GPAW;
(b) **CHGNet first**: volume relaxation with CHGNet (``VolumeRelax(calculator=CHGNet())``),
    then the full relaxation pre-relaxed by CHGNet and finished by GPAW
    (``FullRelax(pre_relax=CHGNet())``) — the production pattern of ``docs/less-dft.md``.

Reported per arm: GPAW force calls (volume, full, total), relaxations converged, wall time; and
per lineage present in both arms the difference of the relaxed GPAW energies per atom (meV/atom)
and of the volumes per atom. Results: ``results/prerelax.json`` and a markdown table.

    python benchmarks/bench_prerelax.py                 # GPAW (the [dft] extra), ~15 min
    python benchmarks/bench_prerelax.py --quick         # EMT as the stand-in, CHGNet, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from bench_common import publish

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _settings(path: Path) -> tuple:
    from pyiron_assyst.cli.settings import load_settings

    formulas, configs, _ = load_settings(path)
    return formulas, configs


def _arm(sampled: list, volume, full, calculator, workers: int) -> dict:
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.stages.relax import relax

    executor = Executor(kind="process", max_workers=workers)
    start = time.perf_counter()
    volume_relaxed, volume_report = relax(sampled, volume, calculator, executor)
    relaxed, full_report = relax(volume_relaxed, full, calculator, executor)
    wall = time.perf_counter() - start
    finals = {a.info["root"]: a for a in relaxed}
    dft_volume = 0 if volume.calculator is not None else volume_report.force_calls
    return {"wall_seconds": wall, "dft_calls_volume": dft_volume,
            "dft_calls_full": full_report.force_calls,
            "dft_calls": dft_volume + full_report.force_calls,
            "n_in": len(sampled), "n_relaxed": len(relaxed),
            "converged": sum(bool(a.info["converged"]) for a in relaxed),
            "pre_relax_steps": [a.info.get("pre_relax_steps", 0) for a in relaxed],
            "finals": {root: {"energy": a.get_potential_energy() / len(a),
                              "volume": a.get_volume() / len(a),
                              "converged": bool(a.info["converged"])}
                       for root, a in finals.items()}}


def run(args: argparse.Namespace) -> dict:
    import dataclasses

    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.calculators.chgnet import CHGNet
    from pyiron_assyst.stages.filters import apply_filter
    from pyiron_assyst.stages.sample import sample

    formulas, configs = _settings(ROOT / "examples" / "al_gpaw.toml")
    calculator = EMT() if args.quick else configs["calculator"]
    sample_config = configs["sample_config"]
    if args.quick:
        sample_config = dataclasses.replace(sample_config, spacegroups=(221, 225, 229, 194))
    generated, _ = sample(formulas, sample_config)
    sampled, _ = apply_filter(generated, configs["sample_filter"], "sample_filter")
    volume, full = configs["volume_relax"], configs["full_relax"]
    cheap = CHGNet()
    arms = {"DFT only": (volume, full),
            "CHGNet first": (dataclasses.replace(volume, calculator=cheap),
                             dataclasses.replace(full, pre_relax=cheap))}
    out = {"calculator": type(calculator).__name__, "cells": len(sampled), "arms": {}}
    for name, (v, f) in arms.items():
        out["arms"][name] = _arm(sampled, v, f, calculator, args.workers)
        print(f"{name}: {out['arms'][name]['dft_calls']} calls", file=sys.stderr, flush=True)
    a, b = (out["arms"][n]["finals"] for n in arms)
    both = sorted(set(a) & set(b))
    out["energy_difference_mev_per_atom"] = [1000 * (b[r]["energy"] - a[r]["energy"])
                                             for r in both]
    out["volume_difference_per_atom"] = [b[r]["volume"] - a[r]["volume"] for r in both]
    return out


def markdown(result: dict) -> str:
    lines = [f"{result['cells']} sampled cells of `examples/al_gpaw.toml` (Al, 1-2 atoms), "
             f"{result['calculator']} with that example's settings; volume and full relaxation "
             f"with that example's tolerances and steps (wall times: one worker on a shared "
             f"machine).", "",
             "| arm | DFT force calls (volume + full) | relaxed / converged | wall time (s) |",
             "|---|---|---|---|"]
    for name, arm in result["arms"].items():
        lines.append(f"| {name} | {arm['dft_calls']} ({arm['dft_calls_volume']} + "
                     f"{arm['dft_calls_full']}) | {arm['n_relaxed']} / {arm['converged']} | "
                     f"{arm['wall_seconds']:.0f} |")
    de = np.array(result["energy_difference_mev_per_atom"])
    same = np.abs(de) <= 1.0
    lower, higher = de[de < -1.0], de[de > 1.0]
    plain, cheap = (arm["dft_calls"] for arm in result["arms"].values())
    lines += ["", f"DFT force calls with CHGNet first: **{cheap / plain:.2f}** of DFT only "
              f"({cheap} against {plain}). Of the {len(de)} lineages, {int(same.sum())} reach the "
              f"same minimum (relaxed {result['calculator']} energies within 1 meV/atom); "
              f"{len(lower)} reach a lower one with CHGNet first (by "
              f"{_span(-lower)} meV/atom) and {len(higher)} a higher one (by "
              f"{_span(higher)} meV/atom). Mean difference {de.mean():+.3g} meV/atom."]
    return "\n".join(lines) + "\n"


def _span(values: np.ndarray) -> str:
    if not len(values):
        return "-"
    return f"{values.min():.0f}" if len(values) == 1 else (
        f"{values.min():.0f}-{values.max():.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="EMT as the stand-in for GPAW, four space groups")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "prerelax.json")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--render", action="store_true",
                        help="only write the table again from --json")
    args = parser.parse_args(argv)
    if args.render:
        publish(markdown(json.loads(args.json.read_text())), args.markdown)
        return 0
    result = run(args)
    publish(markdown(result), args.markdown, result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
