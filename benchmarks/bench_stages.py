"""Stage by stage, side by side: the reference (``assyst`` 1.0.0) and pyiron_assyst, same input.

Run::

    python benchmarks/bench_stages.py --case unary [--repeats 2] [--json out.json]

Every stage gets the *same* input in both codes, pyiron_assyst's output of the stage before
(without calculators), so that wall time, force calls and convergence compare like with like:
sample (formulas × space groups, then ``AspectFilter(6)``), volume relax, full relax, perturb
(with its distance filter), filter (the union of sampled, relaxed and perturbed structures)
and label (EMT single points of the filtered union). Each measurement is repeated and the
fastest run kept; the two codes alternate, so both see the same load.

"1 core" runs are serial in this process with BLAS limited to one thread (the reference has no
other mode); "2 cores" runs use pyiron_assyst's local process pool with two workers (started
before the clock starts; workers' caches start empty in every repeat).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import impl_ours as ours
import impl_reference as ref
import numpy as np
from ase import Atoms
from bench_common import (
    CASES,
    Case,
    StageRun,
    Timing,
    ks,
    measure,
    nearest_distance,
    one_core,
    strip,
)

from pyiron_assyst.execution.executors import run_tasks, shutdown_pools
from pyiron_assyst.stages import _pyxtal

REF, OURS = ref.NAME, ours.NAME
OURS_ASE_LBFGS = f"{OURS}, ASE LBFGS"
"""pyiron_assyst's full relaxation with the reference's optimizer (ASE's LBFGS)."""


def fresh_pool(cores: int) -> None:
    """Stop the worker pool and start a warm one with ``cores`` workers (caches empty)."""
    shutdown_pools()
    run_tasks(ours.warm_worker, list(range(cores)), ours.executor(cores))


def cold_caches() -> None:
    """Forget pyiron_assyst's per-process pyxtal caches (groups, tolerance matrices)."""
    _pyxtal._group.cache_clear()
    _pyxtal._tol_matrix.cache_clear()


def same_structures(a: Sequence[Atoms], b: Sequence[Atoms]) -> bool:
    """Bit-identical positions, cells and (where present) energies, in the same order."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.positions.tobytes() != y.positions.tobytes():
            return False
        if x.cell.array.tobytes() != y.cell.array.tobytes():
            return False
        ex = x.calc.results.get("energy") if x.calc is not None else None
        ey = y.calc.results.get("energy") if y.calc is not None else None
        if ex != ey:
            return False
    return True


def compare_relaxations(reference: list[tuple[bool, int]], mine: list[Atoms]) -> dict[str, int]:
    """Structure by structure: same force calls, and where the counts differ, why."""
    counts = {"same_force_calls": 0, "both_converged_different_calls": 0,
              "only_reference_converged": 0, "only_ours_converged": 0,
              "neither_converged_different_calls": 0}
    for (ref_converged, ref_calls), atoms in zip(reference, mine):
        converged, calls = bool(atoms.info["converged"]), int(atoms.info["force_calls"])
        calls += int(atoms.info["relax_steps"]) == calls  # the first call, saved by a label
        if converged != ref_converged:
            counts["only_ours_converged" if converged else "only_reference_converged"] += 1
        elif calls == ref_calls:
            counts["same_force_calls"] += 1
        elif converged:
            counts["both_converged_different_calls"] += 1
        else:
            counts["neither_converged_different_calls"] += 1
    return counts


def energy_ks(reference: Sequence[Atoms], mine: Sequence[Atoms]) -> dict[str, float]:
    """KS statistic of the relaxed energies per atom (eV) of both codes, and their medians."""
    theirs = [a.get_potential_energy() / len(a) for a in reference]
    ours_ = [a.get_potential_energy() / len(a) for a in mine]
    statistic, p = ks(theirs, ours_)
    return {"ks": statistic, "p": p, "median_reference": float(np.median(theirs)),
            "median_ours": float(np.median(ours_))}


def _relative(children: Sequence[Atoms], parents: dict[str, Atoms],
              parent_of: Callable[[Atoms], str]) -> dict[str, list[float]]:
    """Per child: volume and nearest distance relative to its parent's (dimensionless)."""
    volume, distance = [], []
    for child in children:
        parent = parents[parent_of(child)]
        volume.append(child.get_volume() / parent.get_volume())
        distance.append(nearest_distance(child) / nearest_distance(parent))
    return {"volume ratio": volume, "distance ratio": distance}


def perturbation_equivalence(parents: Sequence[Atoms], reference: Sequence[Atoms],
                             mine: Sequence[Atoms]) -> dict[str, dict[str, float]]:
    """KS statistics of child/parent volume and nearest-distance ratios of both codes.

    Both perturbed the same parents, and each child is compared with its own parent, so the
    ratios are independent draws of the perturbation (the children's absolute volumes are not:
    eight children of one parent cluster around its volume, which inflates the significance
    of a KS test on them).
    """
    by_uuid = {p.info["uuid"]: p for p in parents}
    # the reference appends the parent's uuid to info["lineage"] first (then one per step)
    theirs = _relative(reference, by_uuid, lambda a: a.info["lineage"][0])
    ours_ = _relative(mine, by_uuid, lambda a: a.info["parent"])
    out = {}
    for key in ours_:
        statistic, p = ks(theirs[key], ours_[key])
        out[key] = {"ks": statistic, "p": p, "median_reference": float(np.median(theirs[key])),
                    "median_ours": float(np.median(ours_[key]))}
    return out


class Bench:
    """Runs the stages of one case and collects :class:`StageRun` rows."""

    def __init__(self, case: Case, repeats: int, cores: Sequence[int] = (1, 2),
                 log: Callable[[str], None] = print, fresh_pools: bool = True) -> None:
        self.case, self.repeats, self.cores, self.log = case, repeats, tuple(cores), log
        self.fresh_pools = fresh_pools
        self.rows: list[StageRun] = []

    def _row(self, stage: str, impl: str, cores: int, timing: Timing, n_in: int, n_out: int,
             **extra: Any) -> StageRun:
        row = StageRun(self.case.name, stage, impl, cores, timing.wall, timing.walls,
                       timing.cpu, n_in, n_out, peak_mb=timing.peak_mb,
                       idle_estimate=timing.idle_estimate, worker_cpu=timing.worker_cpu,
                       **extra)
        self.rows.append(row)
        calls = f", {row.force_calls} force calls" if row.force_calls is not None else ""
        self.log(f"  {stage:<13} {impl:<14} {cores} core(s): {row.wall:8.2f} s "
                 f"(cpu {row.cpu:7.2f} s) "
                 f"{n_in} -> {n_out}{calls}")
        return row

    def _reference(self, func: Callable[[], Any]) -> Timing:
        def run() -> Any:
            ref.METER.reset()
            with one_core():
                out = func()
            return out, ref.METER.calls, ref.METER.seconds

        return measure(run, self.repeats)

    def _ours(self, func: Callable[[int], Any], cores: int,
              setup: Callable[[], None] | None = None) -> Timing:
        def run() -> Any:
            if cores == 1:
                with one_core():
                    return func(1)
            return func(cores)

        if cores > 1 and self.fresh_pools:
            def setup(previous=setup) -> None:  # type: ignore[misc]
                if previous is not None:
                    previous()
                fresh_pool(cores)
        elif cores > 1:
            fresh_pool(cores)  # once; workers keep their caches between repeats
        return measure(run, self.repeats, setup)

    # ------------------------------------------------------------------ stages

    def sample(self) -> list[Atoms]:
        case = self.case
        timing = self._reference(lambda: ref.sample(case))
        (structures, drawn), _, _ = timing.result
        self._row("sample", REF, 1, timing, case.grid_points, len(structures),
                  extra={"drawn": drawn})
        kept: list[Atoms] = []
        for cores in self.cores:
            timing = self._ours(lambda c: ours.sample(case, c), cores, cold_caches)
            out, report, _ = timing.result
            extra = {"drawn": report.n_out, "drops": report.drop_counts()}
            if cores == 1:
                kept = out
            else:
                extra["identical_to_serial"] = same_structures(out, kept)
            self._row("sample", OURS, cores, timing, case.grid_points, len(out), extra=extra)
        return kept

    def relax(self, structures: list[Atoms], kind: str) -> list[Atoms]:
        """Both codes relax the same geometries; ours as its previous stage left them (with
        their single points: the full relaxation starts from the volume relaxation's)."""
        stage = f"{kind} relax"
        inputs = strip(structures)
        timing = self._reference(lambda: (ref.relax(inputs, kind, self.case.max_steps),
                                          list(ref.PER_STRUCTURE_CALLS)))
        ((out, per_structure), calls, seconds) = timing.result
        reference_out = out
        reference = [(bool(a.info["relax_converged"]), n) for a, n in zip(out, per_structure)]
        self._row(stage, REF, 1, timing, len(inputs), len(out), force_calls=calls,
                  calc_time=seconds, converged=ref.converged(out))
        serial: list[Atoms] = []
        for cores in self.cores:
            timing = self._ours(lambda c: ours.relax(structures, kind, c, self.case.max_steps),
                                cores)
            out, report = timing.result
            extra = {}
            if cores == 1:
                serial = out
                extra["per_structure"] = compare_relaxations(reference, out)
                extra["energy_ks"] = energy_ks(reference_out, out)
            else:
                extra["identical_to_serial"] = same_structures(out, serial)
            self._row(stage, OURS, cores, timing, len(inputs), len(out),
                      force_calls=report.force_calls, calc_time=report.calculator_time,
                      converged=ours.converged(report), extra=extra)
        if kind == "full":
            timing = self._ours(lambda c: ours.relax(structures, kind, c, self.case.max_steps,
                                                     optimizer="LBFGS"), 1)
            out, report = timing.result
            self._row(stage, OURS_ASE_LBFGS, 1, timing, len(inputs), len(out),
                      force_calls=report.force_calls, calc_time=report.calculator_time,
                      converged=ours.converged(report),
                      extra={"per_structure": compare_relaxations(reference, out),
                             "energy_ks": energy_ks(reference_out, out)})
        return serial

    def perturb(self, structures: list[Atoms]) -> list[Atoms]:
        inputs = strip(structures)
        timing = self._reference(lambda: ref.perturb(inputs, self.case.seed))
        (out, _, _) = timing.result
        self._row("perturb", REF, 1, timing, len(inputs), len(out))
        timing = self._ours(lambda c: ours.perturb(inputs, self.case), 1)
        mine, report = timing.result
        self._row("perturb", OURS, 1, timing, len(inputs), len(mine),
                  extra={"drops": report.drop_counts(),
                         "equivalence": perturbation_equivalence(inputs, out, mine)})
        return mine

    def filter(self, union: list[Atoms]) -> list[Atoms]:
        timing = self._reference(lambda: ref.final_filter(union))
        (out, _, _) = timing.result
        self._row("filter", REF, 1, timing, len(union), len(out))
        timing = self._ours(lambda c: ours.final_filter(union), 1)
        out, _ = timing.result
        self._row("filter", OURS, 1, timing, len(union), len(out))
        return out

    def label(self, structures: list[Atoms]) -> list[Atoms]:
        """The reference labels everything; ours reuses the relaxations' current labels."""
        inputs = strip(structures)
        timing = self._reference(lambda: ref.label(inputs))
        (out, calls, seconds) = timing.result
        self._row("label", REF, 1, timing, len(inputs), len(out), force_calls=calls,
                  calc_time=seconds)
        serial: list[Atoms] = []
        for cores in self.cores:
            timing = self._ours(lambda c: ours.label(structures, c), cores)
            out, report = timing.result
            extra: dict[str, Any] = {"implementation": ours.LABEL_IMPLEMENTATION}
            if cores == 1:
                serial = out
            else:
                extra["identical_to_serial"] = same_structures(out, serial)
            self._row("label", OURS, cores, timing, len(inputs), len(out),
                      force_calls=report.force_calls, calc_time=report.calculator_time,
                      extra=extra)
        return serial

    def run(self) -> list[StageRun]:
        self.log(f"case {self.case.name}: {self.case.describe()}")
        sampled = self.sample()
        volume = self.relax(sampled, "volume")
        full = self.relax(volume, "full")
        perturbed = self.perturb(full)
        kept = self.filter([*sampled, *volume, *full, *perturbed])
        self.label(kept)
        shutdown_pools()
        return self.rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), default="quick")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--warm-pools", action="store_true",
                        help="start the worker pool once, not before every repeat")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    rows = Bench(CASES[args.case], args.repeats, args.cores,
                 log=lambda text: print(text, file=sys.stderr, flush=True),
                 fresh_pools=not args.warm_pools).run()
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.as_dict() for r in rows], f, indent=1)


if __name__ == "__main__":
    main()
