"""The whole pipeline, each code on its own chain: time, and statistical equivalence of the sets.

Run::

    python benchmarks/bench_pipeline.py --case unary [--repeats 2] [--json out.json]

Four variants run in rounds (so that all see the same load; the fastest round of each counts):

- ``assyst 1.0.0``, 1 core: sample, relax twice, perturb, filter the union, label (the loop);
- ``pyiron_assyst``, 1 core: the stage functions called directly, serial executor;
- ``pyiron_assyst``, 2 cores: the same with a local pool of two workers, started inside the
  clock (a pipeline pays it once);
- ``pyiron_assyst macro``, 1 core: the pyiron_workflow macro ``assyst`` (sample to label and
  curate), compared with the direct calls of the same stages for the graph's overhead (the
  direct chain does not curate nor compute isolated-atom energies: the macro's own wall times
  of those two stages, from its reports, are added to the direct time).

Equivalence: per stage, the number of structures of both codes and the two-sample
Kolmogorov-Smirnov statistic and p-value (``scipy.stats.ks_2samp``) of the volume per atom, the
nearest-neighbour distance and (where labelled) the energy per atom. Both codes draw different
random numbers, so the sets differ structure by structure; a small statistic / large p-value
says the distributions agree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import impl_ours as ours
import impl_reference as ref
import numpy as np
from ase import Atoms
from bench_common import CASES, Case, Timing, descriptors, ks, measure, one_core, strip

from pyiron_assyst.execution.executors import shutdown_pools

SETS = ("sampled", "volume relaxed", "relaxed", "perturbed", "final", "labelled")


class Chain:
    """Runs one code's pipeline and keeps every stage's structures and time (s)."""

    def __init__(self) -> None:
        self.sets: dict[str, list[Atoms]] = {}
        self.times: dict[str, float] = {}
        self.force_calls = 0
        self.calc_time = 0.0
        self.origins: list[str] = []

    def timed(self, stage: str, func: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = func()
        self.times[stage] = time.perf_counter() - start
        return result

    def union(self) -> list[Atoms]:
        parts = ("sampled", "volume relaxed", "relaxed", "perturbed")
        return [a for name in parts for a in self.sets[name]]

    def tag_final(self, kept: Sequence[Atoms]) -> None:
        origin = {id(a): name for name in ("sampled", "volume relaxed", "relaxed", "perturbed")
                  for a in self.sets[name]}
        self.origins = [origin[id(a)] for a in kept]


def reference_chain(case: Case) -> Chain:
    chain, steps = Chain(), case.max_steps
    sets = chain.sets
    ref.METER.reset()
    with one_core():
        sets["sampled"] = chain.timed("sample", lambda: ref.sample(case)[0])
        sets["volume relaxed"] = chain.timed(
            "volume relax", lambda: ref.relax(strip(sets["sampled"]), "volume", steps))
        sets["relaxed"] = chain.timed(
            "full relax", lambda: ref.relax(strip(sets["volume relaxed"]), "full", steps))
        sets["perturbed"] = chain.timed("perturb",
                                        lambda: ref.perturb(sets["relaxed"], case.seed))
        sets["final"] = chain.timed("filter", lambda: ref.final_filter(chain.union()))
        chain.tag_final(sets["final"])
        sets["labelled"] = chain.timed("label", lambda: ref.label(sets["final"]))
    chain.force_calls, chain.calc_time = ref.METER.calls, ref.METER.seconds
    return chain


def ours_chain(case: Case, cores: int) -> Chain:
    chain, steps = Chain(), case.max_steps
    sets = chain.sets
    reports = []

    def keep(result: tuple) -> list[Atoms]:
        reports.append(result[1])
        return result[0]

    if cores > 1:
        shutdown_pools()  # the pool starts inside the clock
    with one_core() if cores == 1 else contextlib.nullcontext():
        sets["sampled"] = chain.timed("sample", lambda: ours.sample(case, cores)[0])
        sets["volume relaxed"] = chain.timed(
            "volume relax", lambda: keep(ours.relax(sets["sampled"], "volume", cores, steps)))
        sets["relaxed"] = chain.timed(
            "full relax", lambda: keep(ours.relax(sets["volume relaxed"], "full", cores, steps)))
        sets["perturbed"] = chain.timed("perturb",
                                        lambda: keep(ours.perturb(sets["relaxed"], case)))
        sets["final"] = chain.timed("filter",
                                    lambda: keep(ours.final_filter(chain.union())))
        chain.tag_final(sets["final"])
        sets["labelled"] = chain.timed("label", lambda: keep(ours.label(sets["final"], cores)))
    chain.force_calls = sum(r.force_calls for r in reports)
    chain.calc_time = sum(r.calculator_time for r in reports)
    return chain


def macro_run(case: Case) -> dict[str, Any]:
    """The pyiron_workflow macro on one core (sample to curate)."""
    import pyiron_workflow as pwf

    from pyiron_assyst.workflow.macro import assyst

    inputs = {
        "formulas": ours.formulas(case), "sample_config": ours.sample_config(case),
        "sample_filter": ours.SAMPLE_FILTER,
        "volume_relax": ours.relaxation("volume", case.max_steps),
        "full_relax": ours.relaxation("full", case.max_steps),
        "perturb_config": ours.perturb_config(case), "final_filter": ours.FINAL_FILTER,
        "calculator": ours.CALCULATOR, "executor": ours.SERIAL,
    }
    with one_core():
        run = pwf.node(assyst).run(**inputs)
    if getattr(run, "exception", None) is not None:
        raise RuntimeError(f"macro failed: {run.exception}")
    return dict(run.outputs)


def equivalence(reference: Chain, mine: Chain) -> list[dict[str, Any]]:
    """Counts and KS statistics per stage set (and per origin within the labelled set)."""
    rows = []
    groups: list[tuple[str, list[Atoms], list[Atoms]]] = [
        (name, reference.sets[name], mine.sets[name]) for name in SETS]
    for origin in ("sampled", "volume relaxed", "relaxed", "perturbed"):
        a = [s for s, o in zip(reference.sets["labelled"], reference.origins) if o == origin]
        b = [s for s, o in zip(mine.sets["labelled"], mine.origins) if o == origin]
        groups.append((f"labelled: {origin}", a, b))
    for name, a, b in groups:
        da, db = descriptors(a), descriptors(b)
        row: dict[str, Any] = {"set": name, "n_reference": len(a), "n_ours": len(b)}
        for key in ("volume", "distance", "energy"):
            statistic, p = ks(da[key], db[key])
            row[key] = {"ks": statistic, "p": p,
                        "median_reference": _median(da[key]), "median_ours": _median(db[key])}
        rows.append(row)
    return rows


def _median(values: Sequence[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else None


def _chain_row(name: str, cores: int, timing: Timing) -> dict[str, Any]:
    chain: Chain = timing.result
    return {"impl": name, "cores": cores, "wall": timing.wall, "walls": timing.walls,
            "cpu": timing.cpu, "peak_mb": timing.peak_mb, "stage_times": chain.times,
            "idle_estimate": timing.idle_estimate, "worker_cpu": timing.worker_cpu,
            "counts": {k: len(v) for k, v in chain.sets.items()},
            "force_calls": chain.force_calls, "calc_time": chain.calc_time}


def run_case(case: Case, repeats: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    log(f"case {case.name}: {case.describe()}")
    load = [round(x, 2) for x in os.getloadavg()]
    import pyiron_workflow  # noqa: F401 - imported once, outside every clock

    import pyiron_assyst.workflow.macro  # noqa: F401
    variants: dict[str, Callable[[], Any]] = {
        "reference": lambda: reference_chain(case),
        "ours-1": lambda: ours_chain(case, 1),
        "ours-2": lambda: ours_chain(case, 2),
        "macro-1": lambda: macro_run(case),
    }
    timings: dict[str, Timing] = {}
    for _ in range(max(1, repeats)):  # rounds: every variant once per round
        for key, func in variants.items():
            timing = measure(func, 1)
            if key not in timings or timing.wall < timings[key].wall:
                walls = [*(timings[key].walls if key in timings else []), timing.wall]
                timings[key] = timing
                timing.walls = walls
            else:
                timings[key].walls.append(timing.wall)
            log(f"  {key:<10} {timing.wall:8.2f} s (cpu {timing.cpu:7.2f} s)")
    shutdown_pools()
    direct = timings["ours-1"].result
    macro_outputs = timings["macro-1"].result
    not_direct = sum(macro_outputs[r].wall_time for r in ("reference_report", "curate_report"))
    direct_wall = sum(direct.times.values()) + not_direct
    return {
        "case": case.name,
        "describe": case.describe(),
        "load": load,
        "chains": [_chain_row(ref.NAME, 1, timings["reference"]),
                   _chain_row(ours.NAME, 1, timings["ours-1"]),
                   _chain_row(ours.NAME, 2, timings["ours-2"])],
        "macro": {"wall": timings["macro-1"].wall, "walls": timings["macro-1"].walls,
                  "direct_wall": direct_wall, "curate_and_isolated_wall": not_direct,
                  "training_set": len(macro_outputs["labelled"]),
                  "curated": len(macro_outputs["training_set"]),
                  "direct_training_set": len(direct.sets["labelled"])},
        "identical_2_cores": _same(direct.sets["labelled"],
                                   timings["ours-2"].result.sets["labelled"]),
        "equivalence": equivalence(timings["reference"].result, direct),
        "label_implementation": ours.LABEL_IMPLEMENTATION,
    }


def _same(a: Sequence[Atoms], b: Sequence[Atoms]) -> bool:
    return len(a) == len(b) and all(
        x.positions.tobytes() == y.positions.tobytes()
        and x.calc.results["energy"] == y.calc.results["energy"] for x, y in zip(a, b))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), default="quick")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the result to this JSON file")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    result = run_case(CASES[args.case], args.repeats,
                      log=lambda text: print(text, file=sys.stderr, flush=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
