"""The ASSYST claim, measured: a potential fitted to the ASSYST set against one fitted to a naive
set of the same size, on structures neither saw.

For each seed the script

1. builds the quick case of ``pyiron-assyst fit`` (Cu, 1-2 atoms, every third space group,
   the short-range structures; EMT labels) and holds 20 % of its lineages out;
2. builds a **naive set** of the same size as the remaining training side: fcc, bcc, hcp and
   sc cells of 1-4 atoms at 0.85-1.2 × each phase's EMT equilibrium volume, strained (±5 %)
   and rattled (σ 0.05 Å), EMT labels, plus the isolated atom (so both fits take their E0s
   from an isolated atom);
3. fits both as ``pyiron-assyst fit`` does by default: the quick case's settings
   (:func:`pyiron_assyst.cli.fit.quick_fit_config`, seed = the seed), then ``--rounds``
   rounds of active learning (:func:`pyiron_assyst.fitting.active.refine`: the model's own MD
   from the set's lowest-energy cells, labelled with EMT, and the model continued
   ``--refit-epochs`` epochs on the set and the snapshots); the same procedure for both sets,
   so that only the set differs. ``--rounds 0`` compares the first fits. Then it evaluates
   both on the same categories:

   - random pyxtal crystals of 3-4 atoms (the sample stage, another seed; shortest distance at
     least 2 Å);
   - atom chains (1 and 2 atoms per period, 2.0-2.8 Å apart);
   - unrelaxed fcc (111) and (100) slabs and rattled copies;
   - a 31-atom fcc vacancy cell and rattled copies;
   - dimers and trimers at 0.7-1.5 × the nearest-neighbour distance;
   - the ASSYST held-out lineages (those within 1 eV/atom of the lowest);
   - the model driving itself: Langevin MD of the vacancy cell at 1500 K (``--md-ps``), the
     shortest distance reached and whether it stayed above 0.65 × the nearest-neighbour
     distance, and the largest ``|E_model - E_ref|`` per atom along it.

Energy MAE in meV/atom, force RMSE in eV/Å; mean and scatter (sample standard deviation) over
the seeds, and per category on how many seeds ASSYST's error is lower, the geometric mean of
the ratio of the errors and a paired t-test of their logarithms. Results:
``results/naive.json`` and a markdown table (stdout, ``--markdown``). Fits are cached by content
under ``--work``, so a re-run only explores and evaluates.

    python benchmarks/bench_naive.py --seeds 0 1 2 3 4   # ~15 min per seed
    python benchmarks/bench_naive.py --quick             # smoke: 1 seed, 2 epochs, 0.02 ps
    python benchmarks/bench_naive.py --render --merge a.json b.json   # seeds run apart
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ase import Atoms
from bench_common import publish

HERE = Path(__file__).resolve().parent
CATEGORIES = ("random crystals 3-4 atoms", "chains", "slabs (111), (100)", "vacancy cell",
              "dimers and trimers", "ASSYST held-out (1 eV/atom window)")


def _emt_label(structures: list[Atoms]) -> list[Atoms]:
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.calculators.evaluation import evaluate

    out = []
    for atoms in structures:
        outcome = evaluate(atoms, EMT())
        if outcome.ok:
            out.append(outcome.value)
    return out


def assyst_set(seed: int, workers: int, group_step: int) -> list[Atoms]:
    """The quick case's labelled set (with the short-range structures) for ``seed``."""
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.cli.fit import _generate, label_structures
    from pyiron_assyst.execution.executors import Executor

    args = argparse.Namespace(elements=["Cu"], max_atoms=2, group_step=group_step, seed=seed)
    executor = Executor(kind="process", max_workers=workers)
    structures, _ = _generate(args, EMT(), executor)
    labelled, _ = label_structures(structures, EMT(), executor)
    return labelled


def naive_set(size: int, seed: int) -> list[Atoms]:
    """``size`` EMT-labelled strained, rattled fcc/bcc/hcp/sc cells of 1-4 atoms at
    0.85-1.2 V0, the isolated atom among them."""
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.fitting.bulk import equilibrium, phase_structure
    from pyiron_assyst.fitting.transferability import _calculator_source
    from pyiron_assyst.stages.curate import isolated_atom

    source = _calculator_source(EMT())
    v0 = {p: equilibrium("Cu", p, source).volume for p in ("fcc", "bcc", "hcp", "sc")}
    repeats = {"fcc": [(1, 1, 1), (2, 1, 1), (2, 2, 1), (4, 1, 1)], "bcc": [(1, 1, 1),
               (2, 1, 1), (2, 2, 1), (3, 1, 1)], "sc": [(1, 1, 1), (2, 1, 1), (2, 2, 1),
               (3, 1, 1)], "hcp": [(1, 1, 1), (2, 1, 1)]}
    rng = np.random.default_rng(1000 + seed)
    cells = [isolated_atom("Cu")]
    while len(cells) < size:
        phase = ("fcc", "bcc", "hcp", "sc")[rng.integers(4)]
        scale = rng.uniform(0.85, 1.2)
        atoms = phase_structure("Cu", phase, v0[phase] * scale).repeat(
            repeats[phase][rng.integers(len(repeats[phase]))])
        strain = rng.uniform(-0.05, 0.05, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + (strain + strain.T) / 2),
                       scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        cells.append(atoms)
    return _emt_label(cells)


def test_sets(seed: int, assyst_held_out: list[Atoms]) -> dict[str, list[Atoms]]:
    """The categories of :data:`CATEGORIES`, EMT-labelled."""
    from ase.build import fcc100, fcc111

    from pyiron_assyst.core.composition import composition
    from pyiron_assyst.fitting.stability import cluster, vacancy_cell
    from pyiron_assyst.numerics.distances import shortest_distance_in
    from pyiron_assyst.stages.sample import Formulas, SampleConfig, sample

    a, nearest = 3.59, 3.59 / math.sqrt(2)
    rng = np.random.default_rng(2000 + seed)
    crystals, _ = sample(Formulas.range("Cu", 3, 5), SampleConfig(
        spacegroups=tuple(range(2, 231, 9)), max_atoms=4, seed=500 + seed))
    crystals = [c for c in crystals if shortest_distance_in(c) >= 2.0][:40]
    chains = []
    for per_cell in (1, 2):
        for spacing in (2.0, 2.2, 2.4, 2.6, 2.8):
            chain = Atoms(["Cu"] * per_cell, positions=[[i * spacing, 5, 5]
                                                         for i in range(per_cell)],
                          cell=[per_cell * spacing, 10, 10], pbc=True)
            if per_cell == 2:
                chain.positions[1, 0] += 0.1
            chains.append(chain)
    slabs = []
    for build in (fcc111, fcc100):
        slab = build("Cu", size=(2, 2, 5), a=a, vacuum=5.0, periodic=True)
        slabs.append(slab)
        for _ in range(2):
            copy = slab.copy()
            copy.positions += rng.normal(0, 0.05, copy.positions.shape)
            slabs.append(copy)
    vacancies = [vacancy_cell("Cu", a)]
    for _ in range(3):
        copy = vacancies[0].copy()
        copy.positions += rng.normal(0, 0.05, copy.positions.shape)
        vacancies.append(copy)
    clusters = [cluster(["Cu"] * n, f * nearest) for n in (2, 3)
                for f in (0.7, 0.8, 0.9, 1.0, 1.2, 1.5)]
    per_atom = np.array([s.get_potential_energy() / len(s) for s in assyst_held_out])
    kinds = [composition(s) for s in assyst_held_out]
    low = {k: min(e for e, kk in zip(per_atom, kinds) if kk == k) for k in set(kinds)}
    held = [s for s, e, k in zip(assyst_held_out, per_atom, kinds) if e <= low[k] + 1.0]
    return dict(zip(CATEGORIES, (_emt_label(crystals), _emt_label(chains), _emt_label(slabs),
                                 _emt_label(vacancies), _emt_label(clusters), held)))


def errors(model: object, structures: list[Atoms]) -> dict[str, float]:
    """Energy MAE (meV/atom) and force RMSE (eV/Å) of ``model`` against the stored labels."""
    from pyiron_assyst.fitting.transferability import _calculator_source, _energy_forces

    source = _calculator_source(model)
    de, df = [], []
    for atoms in structures:
        energy, forces = _energy_forces(atoms, source)
        de.append((energy - atoms.get_potential_energy(force_consistent=True)) / len(atoms))
        df.append((forces - atoms.get_forces()).ravel())
    return {"energy_mae": 1000 * float(np.mean(np.abs(de))),
            "force_rmse": float(np.sqrt(np.mean(np.concatenate(df) ** 2))),
            "n": len(structures)}


def model_md(model: object, md_ps: float, seed: int) -> dict[str, float]:
    """The model's own MD of the fcc vacancy cell at 1500 K against EMT."""
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.fitting.stability import md_trace, vacancy_cell
    from pyiron_assyst.fitting.transferability import _calculator_source

    nearest = 3.59 / math.sqrt(2)
    steps = max(10, round(md_ps * 500))
    trace = md_trace(vacancy_cell("Cu", 3.59), _calculator_source(model),
                     _calculator_source(EMT()), 1500.0, steps, 10, 2.0, seed,
                     collapse=0.65 * nearest)
    shortest = min(trace.shortest)
    return {"shortest": shortest, "intact": float(not trace.stopped and
                                                    shortest >= 0.65 * nearest),
            "worst_error": 1000 * float(np.max(np.abs(trace.error()))),
            "time_ps": trace.time[-1] / 1000}


def _fit_default(train: list[Atoms], seed: int, directory: Path,
                 args: argparse.Namespace) -> tuple[object, dict]:
    """The model ``pyiron-assyst fit`` makes of ``train``: the first fit, then ``--rounds``
    rounds of active learning, each continuing the model ``--refit-epochs`` epochs (the
    command's defaults: one round of 40)."""
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.cli.fit import quick_fit_config
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.fitting.active import refine
    from pyiron_assyst.fitting.mace import fit
    from pyiron_assyst.stages.explore import ExploreConfig

    config = quick_fit_config(epochs=args.epochs, seed=seed)
    explore_config = ExploreConfig(threads=1, seed=seed, steps=args.explore_steps,
                                   every=min(50, args.explore_steps),
                                   surfaces=args.explore_surfaces)
    start = time.perf_counter()
    model, report = fit(train, config, None, directory)
    cached = [report.cached]
    model, training, rounds = refine(model, train, EMT(), config, explore_config, args.rounds,
                                     Executor(kind="process", max_workers=args.workers),
                                     directory, continue_epochs=args.refit_epochs)
    cached += [done.fit.cached for done in rounds]
    return model, {"fit_seconds": time.perf_counter() - start, "cached": any(cached),
                   "cached_parts": cached,
                   "n_final": len(training),
                   "explored": [done.explore.n_out for done in rounds],
                   "explore_dropped": [len(done.explore.drops) for done in rounds]}


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    from pyiron_assyst.fitting.mace import split_by_lineage

    labelled = assyst_set(seed, args.workers, args.group_step)
    kept, held_out = split_by_lineage(labelled, 0.2, seed)
    naive = naive_set(len(kept), seed)
    tests = test_sets(seed, held_out)
    out: dict = {"seed": seed, "n_train": len(kept), "n_naive": len(naive),
                 "sizes": {k: len(v) for k, v in tests.items()}}
    for name, train in (("assyst", kept), ("naive", naive)):
        model, fitted = _fit_default(train, seed, args.work / f"{name}_{seed}", args)
        out[name] = {**fitted, **{k: errors(model, v) for k, v in tests.items()},
                     "md": model_md(model, args.md_ps, seed)}
        print(f"seed {seed} {name}: {json.dumps(out[name])}", file=sys.stderr, flush=True)
    return out


def _cell(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _lower(runs: list[dict], value: Callable[[dict, str], float]) -> str:
    """On how many seeds ``value(run, name)`` (an error) is lower for ASSYST than for the
    naive set; the geometric mean of their ratio ASSYST / naive and the two-sided p of a paired
    t-test of the errors' logarithms over the seeds (both sets of a seed meet the same test
    structures; the errors span orders of magnitude, so their ratio is what is compared)."""
    from scipy.stats import ttest_rel

    assyst = np.log([value(r, "assyst") for r in runs])
    naive = np.log([value(r, "naive") for r in runs])
    text = f"{int(np.sum(assyst < naive))}/{len(runs)}; × {np.exp(np.mean(assyst - naive)):.2f}"
    if len(runs) > 2:
        text += f"; p = {ttest_rel(assyst, naive).pvalue:.3f}"
    return text


def markdown(result: dict) -> str:
    """The table of ``result`` (the JSON this script writes)."""
    runs = result["runs"]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    rounds = result.get("rounds", 0)
    procedure = ("the first fit only" if not rounds else
                 f"the first fit and {rounds} round(s) of active learning, each continuing "
                 f"the model {result['refit_epochs']} epochs (pyiron-assyst fit's default: one "
                 f"round of 40){' exploring slabs too' if result.get('explore_surfaces') else ''}"
                 f", for both sets; final training sets of "
                 f"{', '.join(str(r['assyst']['n_final']) for r in runs)} (ASSYST) and "
                 f"{', '.join(str(r['naive']['n_final']) for r in runs)} (naive) structures")
    lines = [f"Seeds {seeds}; mean ± sample standard deviation over the seeds. The structure "
             f"counts are seed {runs[0]['seed']}'s. Training sets of "
             f"{', '.join(str(r['n_train']) for r in runs)} structures; {procedure}.", "",
             "| test set (never trained on) | structures | ASSYST: energy MAE (meV/atom) / "
             "force RMSE (eV/Å) | naive set | ASSYST lower: seeds; error ratio; p |",
             "|---|---|---|---|---|"]
    for category in CATEGORIES:
        row = [category, str(runs[0]["sizes"][category])]
        for name in ("assyst", "naive"):
            e = [r[name][category]["energy_mae"] for r in runs]
            f = [r[name][category]["force_rmse"] for r in runs]
            row.append(f"{_cell(e, 1)} / {_cell(f, 3)}")
        row.append(_lower(runs, lambda r, n, c=category: r[n][c]["energy_mae"]))
        lines.append("| " + " | ".join(row) + " |")
    row = ["MD 1500 K, 31-atom vacancy cell: intact runs; shortest distance (Å); "
           "largest error (meV/atom)", str(len(runs))]
    for name in ("assyst", "naive"):
        md = [r[name]["md"] for r in runs]
        row.append(f"{int(sum(m['intact'] for m in md))}/{len(md)}; "
                   f"{_cell([m['shortest'] for m in md], 2)}; "
                   f"{_cell([m['worst_error'] for m in md], 1)}")
    row.append(_lower(runs, lambda r, n: r[n]["md"]["worst_error"]))
    lines.append("| " + " | ".join(row) + " |")
    fit_s = {n: [r[n]["fit_seconds"] for r in runs if not r[n]["cached"]]
             for n in ("assyst", "naive")}
    lines += ["", "Fit time (s, the first fit and the rounds; models with a fit from the cache "
              "left out): " + ", ".join(
        f"{name} {_cell(values, 0) if values else 'all cached'}"
        for name, values in (("ASSYST", fit_s["assyst"]), ("naive", fit_s["naive"])))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the quick case's)")
    parser.add_argument("--group-step", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of active learning after the first fit, for both sets "
                             "(default 1, as pyiron-assyst fit; 0: the first fits)")
    parser.add_argument("--refit-epochs", type=int, default=40,
                        help="epochs each round continues the model (default 40)")
    parser.add_argument("--explore-surfaces", action="store_true",
                        help="each round also explores a slab of every start (both sets)")
    parser.add_argument("--explore-steps", type=int, default=None,
                        help="MD steps of each exploration run (default: ExploreConfig's)")
    parser.add_argument("--md-ps", type=float, default=2.0, help="MD time in ps (default 2)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("naive-work"))
    parser.add_argument("--json", type=Path, default=HERE / "results" / "naive.json")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: seed 0, 2 epochs, every 20th group, 0.02 ps")
    parser.add_argument("--render", action="store_true",
                        help="only write the table again from --json")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="with --render: join the runs of these files (seeds run apart) "
                             "into --json first")
    args = parser.parse_args(argv)
    if args.render:
        if args.merge:
            parts = [json.loads(path.read_text()) for path in args.merge]
            merged = {**parts[0], "runs": sorted((r for part in parts for r in part["runs"]),
                                                 key=lambda r: r["seed"])}
            args.json.write_text(json.dumps(merged, indent=1))
        publish(markdown(json.loads(args.json.read_text())), args.markdown)
        return 0
    if args.quick:
        args.seeds, args.epochs, args.group_step, args.md_ps = [0], 2, 20, 0.02
        args.refit_epochs, args.explore_steps = 1, 20
    args.work = args.work.resolve()
    from pyiron_assyst.cli.fit import quick_fit_config, use_torch_threads

    use_torch_threads(1)  # the models are evaluated here; one thread, as the fits
    if args.epochs is None:
        args.epochs = quick_fit_config().epochs
    if args.explore_steps is None:
        from pyiron_assyst.stages.explore import ExploreConfig

        args.explore_steps = ExploreConfig().steps
    runs = [run_seed(seed, args) for seed in args.seeds]
    result = {"runs": runs, "epochs": args.epochs, "md_ps": args.md_ps, "rounds": args.rounds,
              "refit_epochs": args.refit_epochs, "explore_surfaces": args.explore_surfaces}
    publish(markdown(result), args.markdown, result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
