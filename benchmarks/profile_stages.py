"""Where the time goes: cProfile of every stage, reference and pyiron_assyst, on one core.

Run::

    python benchmarks/profile_stages.py --case quick [--top 15] [--stage "full relax"]

Inputs are built as in ``bench_stages.py`` (pyiron_assyst's output of the stage before). For each
stage and code it prints the total, the cumulative time of a few marker functions (time inside
the calculator, pyxtal, spglib, the cell filter, ASE's calculator state checks, neighbour lists,
copies of Atoms) and the functions with the most own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import impl_ours as ours
import impl_reference as ref
import numpy as np
from bench_common import CASES, STAGES, one_core, strip

MARKERS = {
    "calculator (EMT.calculate)": ("emt.py", "calculate"),
    "pyxtal from_random": ("pyxtal/__init__.py", "from_random"),
    "pyxtal from_seed (2nd pass)": ("pyxtal/__init__.py", "from_seed"),
    "spglib": ("spglib/spglib.py", "get_symmetry_dataset"),
    "optimizer step": ("lbfgs.py", "step"),
    "cell filter forces": ("filters.py", "get_forces"),
    "cell filter forces (ours)": ("cell_filters.py", "get_forces"),
    "calculator check_state": ("calculator.py", "check_state"),
    "neighbour list (ASE)": ("neighborlist.py", "neighbor_list"),
    "primitive_neighbor_list": ("neighborlist.py", "primitive_neighbor_list"),
    "Atoms.copy": ("atoms.py", "copy"),
    "lineage.make_child": ("lineage.py", "make_child"),
    "rng_for": ("lineage.py", "rng_for"),
    "distance filter (ours)": ("distances.py", "has_close_pair"),
}


def marker_times(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative time of every marker function (summed over matching entries)."""
    out: dict[str, float] = {}
    for label, (path, name) in MARKERS.items():
        total = 0.0
        for (filename, _, function), (_, _, _, cumulative, callers) in stats.stats.items():
            if function != name or not filename.endswith(path):
                continue
            # count only outermost calls (not recursive ones from the same function)
            if any(caller[2] == name and caller[0].endswith(path) for caller in callers):
                continue
            total += cumulative
        if total:
            out[label] = total
    return out


def profile(func: Callable[[], Any]) -> tuple[pstats.Stats, Any]:
    profiler = cProfile.Profile()
    with one_core():
        profiler.enable()
        result = func()
        profiler.disable()
    return pstats.Stats(profiler), result


def report(stage: str, impl: str, stats: pstats.Stats, top: int) -> None:
    total = stats.total_tt
    print(f"\n### {stage} — {impl}: {total:.2f} s under cProfile\n")
    for label, seconds in sorted(marker_times(stats).items(), key=lambda kv: -kv[1]):
        print(f"  {label:<30} {seconds:8.2f} s  {100 * seconds / total:5.1f} %")
    print(f"\n  own time, top {top}:")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]
    for (filename, line, function), (_, calls, own, cumulative, _) in rows:
        short = "/".join(filename.split("/")[-2:])
        print(f"  {own:7.2f} s own {cumulative:7.2f} s cum {calls:>8} x  "
              f"{short}:{line}({function})")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), default="quick")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--stage", choices=STAGES, nargs="*", default=list(STAGES))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    case = CASES[args.case]
    wanted = set(args.stage)

    def run(stage: str, reference: Callable[[], Any], mine: Callable[[], Any]) -> Any:
        if stage in wanted:
            report(stage, ref.NAME, profile(reference)[0], args.top)
            stats, result = profile(mine)
            report(stage, ours.NAME, stats, args.top)
            return result
        with one_core():
            return mine()

    sampled = run("sample", lambda: ref.sample(case), lambda: ours.sample(case, 1))[0]
    inputs = strip(sampled)
    volume = run("volume relax", lambda: ref.relax(inputs, "volume", case.max_steps),
                 lambda: ours.relax(inputs, "volume", 1, case.max_steps))[0]
    inputs = strip(volume)
    full = run("full relax", lambda: ref.relax(inputs, "full", case.max_steps),
               lambda: ours.relax(inputs, "full", 1, case.max_steps))[0]
    inputs = strip(full)
    perturbed = run("perturb", lambda: ref.perturb(inputs, case.seed),
                    lambda: ours.perturb(inputs, case))[0]
    union = [*sampled, *volume, *full, *perturbed]
    kept = run("filter", lambda: ref.final_filter(union), lambda: ours.final_filter(union))[0]
    inputs = strip(kept)
    if "label" in wanted:
        run("label", lambda: ref.label(inputs), lambda: ours.label(inputs, 1))


if __name__ == "__main__":
    main()
