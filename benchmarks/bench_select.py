"""Less DFT for the same potential? Fits on the whole ASSYST pool against fits on a selection.

For each case (Cu with 1-3 atoms; Cu-Ag with 1-2 atoms) the script builds the labelled ASSYST set
(EMT as the reference), holds 20 % of the lineages out (the same held-out set for every fit),
and fits the quick MACE model of ``pyiron-assyst fit`` on

(a) the whole remaining pool,
(b) ``--fraction`` of it chosen by the select stage (leverage sampling), for each seed,
(c) the same fraction chosen uniformly at random, for each seed,
(d) with ``--arms cost``: the same fraction by leverage per predicted core-hour (the select
    stage's ``cost_aware``), for each seed,

then a sweep of fractions with (b). The selection picks among the crystals; the short-range
structures (isolated atoms, dimers, trimers, compressed crystals) are always kept, as the
canonical macro adds them after the select stage. Every model is evaluated on the held-out set
(energy MAE in meV/atom, all and within 1 eV/atom of the lowest per composition; force RMSE in
eV/Å) and by its transferability report (E-V, elastic constants, vacancy, surfaces, dimers,
formation energies of a binary, one 2-ps MD run at 1500 K; ``--no-report`` skips it). Target
(the issue's): (b) within 1.2x of (a)'s energy MAE and better than (c) beyond its seed scatter.
A linear check runs first (seconds): the same selections scored with a ridge regression on the
descriptor, the model leverage is derived for. Results: ``results/select_<case>.json`` (or
``--json``) and a markdown table on stdout (``--markdown`` writes it to a file as well).

**Training protocol.** A subset is trained for ``epochs / fraction`` epochs (``--equal-steps``,
the default), so every fit takes the same number of optimizer steps: a fit on 40 % of the pool
for the same epochs gets 40 % of the steps, and the comparison would confound less data with
less training. What a selection saves is DFT labels; the fit's own cost (minutes on a CPU) is
negligible next to one DFT calculation per structure. ``--no-equal-steps`` trains every fit
for ``--epochs``.

The labelled pool and every finished fit are kept under ``--work`` and read back, so arms and
seeds can be run one invocation at a time (``--arms``, ``--seed-list``) on a busy machine.

    python benchmarks/bench_select.py                 # both cases, 3 seeds, 100 epochs
    python benchmarks/bench_select.py --cases unary --epochs 60 --arms random --seed-list 0
    python benchmarks/bench_select.py --quick         # smoke run: Cu only, 1 seed, 5 epochs
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms

HERE = Path(__file__).resolve().parent


def labelled_pool(elements: list[str], max_atoms: int, group_step: int, seed: int,
                  workers: int, cache: Path | None = None) -> list[Atoms]:
    """The ASSYST set of the canonical macro, labelled with EMT (read from ``cache`` if there)."""
    if cache is not None and cache.exists():
        with open(cache, "rb") as handle:
            return pickle.load(handle)
    import pyiron_workflow as pwf

    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.stages.label import label
    from pyiron_assyst.stages.sample import Formulas, SampleConfig
    from pyiron_assyst.workflow.macro import assyst

    formulas = Formulas.range(elements, 0, max_atoms + 1).trim(1, max_atoms)
    executor = Executor(kind="process", max_workers=workers)
    run = pwf.node(assyst).run(
        formulas=formulas,
        sample_config=SampleConfig(spacegroups=tuple(range(1, 231, group_step)),
                                   max_atoms=max_atoms, seed=seed),
        calculator=EMT(), executor=executor)
    if run.exception is not None:
        raise run.exception
    labelled, _ = label(list(run.outputs["training_set"]), EMT(), executor)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "wb") as handle:
            pickle.dump(labelled, handle)
    return labelled


def held_out_errors(model: object, held_out: list[Atoms]) -> dict[str, float]:
    """Energy MAE (meV/atom, ``free_energy``) and force RMSE (eV/Å) of ``model`` on the set, and
    the energy MAE of the structures within 1 eV/atom of their composition's lowest (the
    quick case's "held-out in window")."""
    from pyiron_assyst.core.composition import composition
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.stages.label import label

    predicted, _ = label([a.copy() for a in held_out], model, Executor(kind="serial"),
                         relabel=True)
    by_uuid = {a.info["parent"]: a for a in predicted}  # a label is a child of its input
    de, df, per_atom = [], [], []
    for ref in held_out:
        got = by_uuid[ref.info["uuid"]]
        n = len(ref)
        per_atom.append(ref.get_potential_energy(force_consistent=True) / n)
        de.append(got.get_potential_energy(force_consistent=True) / n - per_atom[-1])
        df.append((got.get_forces() - ref.get_forces()).ravel())
    kinds = [composition(a) for a in held_out]
    lowest = {k: min(e for e, kk in zip(per_atom, kinds) if kk == k) for k in set(kinds)}
    window = [abs(d) for d, e, k in zip(de, per_atom, kinds) if e <= lowest[k] + 1.0]
    return {"energy_mae_mev_per_atom": 1000 * float(np.mean(np.abs(de))),
            "energy_mae_window_mev_per_atom": 1000 * float(np.mean(window)),
            "force_rmse_ev_per_a": float(np.sqrt(np.mean(np.concatenate(df) ** 2)))}


def report_summary(model: object, elements: list[str], held_out: list[Atoms]) -> dict:
    """The transferability report of ``model`` against EMT, as the numbers the tables compare.

    One model-driven MD run (the ground state's vacancy cell, 2 ps at 1500 K) instead of the
    default four, to keep a benchmark of many fits affordable.
    """
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.fitting.transferability import TransferabilityConfig, transferability

    config = TransferabilityConfig(elements=tuple(elements),
                                   stability_runs=(("vacancy", 1500.0, 2.0),))
    result = transferability(model, EMT(), held_out, config)

    def errors(word: str, unit: str) -> list[float]:
        return [abs(r.model - r.reference) for r in result.rows
                if word in r.quantity and r.unit == unit and "RMSE" not in r.quantity
                and "max" not in r.quantity]

    ev = [r.model for r in result.rows if r.quantity.endswith("E–V RMSE")]
    out = {"checks_passed": sum(c.passed for c in result.checks),
           "checks": len(result.checks),
           "failed": [c.name for c in result.checks if not c.passed],
           "ev_rmse_mev_per_atom": float(np.mean(ev)),
           "elastic_max_error_gpa": max(errors(" C", "GPa"), default=float("nan")),
           "vacancy_error_ev": max(errors("vacancy formation", "eV"), default=float("nan")),
           "surface_max_error_j_per_m2": max(errors("surface energy", "J/m²"),
                                             default=float("nan")),
           "md_snapshots_mae_mev_per_atom": max(  # per element in a binary report
               r.model for r in result.rows if r.quantity.endswith("MD snapshots: energy MAE"))}
    clusters = [c.value for c in result.checks if c.name.startswith("dimer")]
    out["dimer_error_mev_per_atom"] = max(clusters, default=float("nan"))
    if result.formation:
        out["formation_max_error_mev_per_atom"] = 1000 * max(
            abs(model_value - ref) for ref, model_value in result.formation.values())
    return out


def fit_and_score(train: list[Atoms], held_out: list[Atoms], epochs: int, seed: int,
                  directory: Path, report_elements: list[str] | None = None
                  ) -> dict[str, float]:
    """Fit the quick case's model on ``train`` (or read the scores of the same fit from
    ``directory``) and score it on ``held_out``; with ``report_elements`` also its
    transferability report (:func:`report_summary`)."""
    done = directory / "scores.json"
    scores: dict = {}
    if done.exists():
        scores = json.loads(done.read_text())
        if scores.get("epochs") != epochs or scores.get("n_train") != len(train):
            scores = {}
    if not scores:
        from pyiron_assyst.cli.fit import quick_fit_config, use_torch_threads
        from pyiron_assyst.execution.executors import Executor
        from pyiron_assyst.fitting.mace import fit

        use_torch_threads(1)  # the evaluations in this process (see use_torch_threads)
        start = time.perf_counter()
        model, _ = fit(train, quick_fit_config(epochs=epochs, seed=seed), Executor(kind="serial"),
                       directory)
        scores = held_out_errors(model, held_out)
        scores.update(fit_seconds=time.perf_counter() - start, n_train=len(train), epochs=epochs,
                      model_path=model.model_path, sha256=model.sha256)
        done.write_text(json.dumps(scores))
    if "energy_mae_window_mev_per_atom" not in scores:  # fits scored before it was measured
        from pyiron_assyst.cli.fit import use_torch_threads
        from pyiron_assyst.fitting.mace import MaceModel

        use_torch_threads(1)
        model = MaceModel(scores["model_path"], scores["sha256"])
        scores.update(held_out_errors(model, held_out))
        done.write_text(json.dumps(scores))
    if report_elements and "report" not in scores:
        from pyiron_assyst.cli.fit import use_torch_threads
        from pyiron_assyst.fitting.mace import MaceModel

        use_torch_threads(1)
        model = MaceModel(scores["model_path"], scores["sha256"])
        scores["report"] = report_summary(model, report_elements, held_out)
        done.write_text(json.dumps(scores))
    return scores


def chosen(pool: list[Atoms], method: str, fraction: float, seed: int, descriptor: str
           ) -> tuple[list[Atoms], dict]:
    """The select stage on the pool's crystals; the short-range structures (isolated atoms,
    dimers, trimers, compressed crystals) are always kept, as in the canonical macro, which adds
    them after the selection. ``method`` ``"cost"`` is leverage with ``cost_aware=True``."""
    from pyiron_assyst.stages.select import SelectConfig, select
    from pyiron_assyst.stages.short_range import is_short_range

    config = SelectConfig(method="leverage" if method == "cost" else method, fraction=fraction,
                          seed=seed, cost_aware=method == "cost",
                          descriptor=DESCRIPTORS[descriptor]())
    kept, report = select([a for a in pool if not is_short_range(a)], config)
    return kept + [a for a in pool if is_short_range(a)], dict(report.notes)


LINEAR_METHODS = ("leverage", "leverage_top", "farthest", "random")

ARMS = {"leverage": "leverage", "cost": "leverage per predicted core-hour", "random": "random"}
"""The selections fitted for each seed: ``--arms`` key and the tables' label."""


def linear_check(pool: list[Atoms], held_out: list[Atoms], fraction: float, seeds: int,
                 descriptor: str) -> dict:
    """The selection's premise, on the model leverage is derived for: a ridge regression of the
    total energy on the summed descriptor and the atom counts per element, trained on the whole
    crystal pool and on each method's selection (``seeds`` seeds each). Returns the held-out
    crystals' energy MAE within 1 eV/atom (meV/atom) per training set; seconds to run."""
    from pyiron_assyst.core.composition import composition
    from pyiron_assyst.stages.select import SelectConfig, select
    from pyiron_assyst.stages.short_range import is_short_range

    crystals = [a for a in pool if not is_short_range(a)]
    tests = [a for a in held_out if not is_short_range(a)]
    species = sorted({int(z) for a in crystals + tests for z in a.numbers})
    maker = DESCRIPTORS[descriptor]()

    def design(structures: list[Atoms]) -> np.ndarray:
        counts = [[int(np.sum(a.numbers == z)) for z in species] for a in structures]
        rows = [maker.of(a, species).ravel() for a in structures]
        return np.column_stack([np.array(rows), np.array(counts)])

    def energy(structures: list[Atoms]) -> np.ndarray:
        return np.array([a.get_potential_energy(force_consistent=True) for a in structures])

    x_test, e_test = design(tests), energy(tests)
    atoms = np.array([len(a) for a in tests])
    kinds = [composition(a) for a in tests]
    per_atom = e_test / atoms
    lowest = {k: min(e for e, kk in zip(per_atom, kinds) if kk == k) for k in set(kinds)}
    near = per_atom <= np.array([lowest[k] for k in kinds]) + 1.0

    def mae(train: list[Atoms]) -> float:
        x, e = design(train), energy(train)
        scale = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        a = x / scale
        w = np.linalg.solve(a.T @ a + 1e-6 * len(a) * np.eye(a.shape[1]), a.T @ e)
        error = np.abs((x_test / scale) @ w - e_test) / atoms
        return 1000 * float(np.mean(error[near]))

    out: dict = {"whole": mae(crystals)}
    for method in LINEAR_METHODS:
        out[method] = [mae(select(crystals, SelectConfig(
            method=method, fraction=fraction, seed=seed, descriptor=maker))[0])
            for seed in range(seeds if method in ("leverage", "random") else 1)]
    return out


def epochs_for(args: argparse.Namespace, n_train: int, n_pool: int) -> int:
    """Epochs of a fit on ``n_train`` of ``n_pool`` structures.

    With ``--equal-steps`` (the default) a subset is trained for ``epochs * n_pool / n_train``
    epochs, so every fit takes the same number of optimizer steps: a selection saves DFT labels,
    and the fit's own cost (minutes on a CPU) is negligible next to one DFT label per structure,
    so it must not also be handed a shorter training. Without it every fit runs ``epochs``.
    """
    if not args.equal_steps:
        return args.epochs
    return max(1, round(args.epochs * n_pool / max(n_train, 1)))


def run_case(name: str, elements: list[str], max_atoms: int, args: argparse.Namespace) -> dict:
    from pyiron_assyst.fitting.mace import split_by_lineage

    slug = name.split()[0]
    work = Path(args.work) / slug
    work.mkdir(parents=True, exist_ok=True)
    labelled = labelled_pool(elements, max_atoms, args.group_step, 0, args.workers,
                             Path(args.work) / f"pool_{slug}_{args.group_step}.pkl")
    pool, held_out = split_by_lineage(labelled, 0.2, seed=0)
    steps = "equal steps" if args.equal_steps else "equal epochs"
    out: dict = {"case": name, "n_pool": len(pool), "n_held_out": len(held_out),
                 "fraction": args.fraction, "seeds": args.seeds, "epochs": args.epochs,
                 "protocol": steps, "descriptor": args.descriptor}
    tag = f"{'steps' if args.equal_steps else 'epochs'}{args.epochs}"

    def run(subset: list[Atoms], label: str) -> dict:
        return fit_and_score(subset, held_out, epochs_for(args, len(subset), len(pool)), 0,
                             work / f"{tag}_{label}", elements if args.report else None)

    out["linear"] = linear_check(pool, held_out, args.fraction, 5, args.descriptor)
    if "whole" in args.arms:
        out["whole"] = run(pool, "whole")
    for method in ARMS:
        if method not in args.arms:
            continue
        runs = []
        for seed in args.seed_list or range(args.seeds):
            subset, notes = chosen(pool, method, args.fraction, seed, args.descriptor)
            where = f"random_{args.fraction}_{seed}" if method == "random" \
                else f"{method}_{args.descriptor}_{args.fraction}_{seed}"
            runs.append({**run(subset, where), "seed": seed, **notes})
        out[method] = runs
    out["sweep"] = []
    for fraction in args.sweep:
        subset, notes = chosen(pool, "leverage", fraction, 0, args.descriptor)
        scores = run(subset, f"leverage_{args.descriptor}_{fraction}_0")
        out["sweep"].append({**scores, "fraction": fraction, **notes})
    return out


REPORT_COLUMNS = (
    ("ev_rmse_mev_per_atom", "E–V RMSE (meV/atom)", "{:.1f}"),
    ("elastic_max_error_gpa", "elastic, max error (GPa)", "{:.1f}"),
    ("vacancy_error_ev", "vacancy error (eV)", "{:.3f}"),
    ("surface_max_error_j_per_m2", "surface, max error (J/m²)", "{:.3f}"),
    ("dimer_error_mev_per_atom", "dimer 0.7-1.0 (meV/atom)", "{:.0f}"),
    ("md_snapshots_mae_mev_per_atom", "MD 1500 K, energy MAE (meV/atom)", "{:.1f}"),
    ("formation_max_error_mev_per_atom", "formation, max error (meV/atom)", "{:.0f}"),
)
"""Numbers of each fit's transferability report in the second table (those present)."""


def _rows(result: dict) -> list[tuple[str, list[dict]]]:
    """(label, runs) of every arm in the table's order."""
    rows = [("whole pool", [result["whole"]])] if "whole" in result else []
    for method, label in ARMS.items():
        runs = result.get(method) or []
        if runs:
            seeds = ", ".join(str(r["seed"]) for r in runs)
            rows.append((f"{round(100 * result['fraction'])} % by {label} "
                         f"(seed{'s' * (len(runs) > 1)} {seeds})", runs))
    rows += [(f"{round(100 * run['fraction'])} % by leverage (seed 0)", [run])
             for run in result["sweep"]]
    return rows


def _stat(runs: list[dict], get, fmt: str) -> str:
    values = [get(r) for r in runs]
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def _against_random(result: dict, method: str) -> str:
    """A line comparing ``method``'s held-out energy errors (within 1 eV/atom) with random's
    over the seeds: the difference of the means, the ranges, and Welch's two-sided t-test
    ("" with fewer than two seeds in either arm)."""
    from scipy.stats import ttest_ind

    key = "energy_mae_window_mev_per_atom"
    a = [r[key] for r in result.get(method) or [] if key in r]
    b = [r[key] for r in result.get("random") or [] if key in r]
    if len(a) < 2 or len(b) < 2:
        return ""
    test = ttest_ind(a, b, equal_var=False)
    return (f"{ARMS[method]} against random, energy MAE within 1 eV/atom: "
            f"{np.mean(a) - np.mean(b):+.1f} meV/atom (range {min(a):.1f}-{max(a):.1f} "
            f"against {min(b):.1f}-{max(b):.1f}; Welch's t {test.statistic:.2f}, "
            f"p = {test.pvalue:.3f}, {len(a)} and {len(b)} seeds)")


def markdown(result: dict) -> str:
    """The scores table and, when the fits have reports, the transferability table."""
    keys = ("energy_mae_window_mev_per_atom", "energy_mae_mev_per_atom")
    whole = [result.get("whole", {}).get(key, float("nan")) for key in keys]
    lines = [f"**{result['case']}**: pool {result['n_pool']}, held out {result['n_held_out']}, "
             f"{result['epochs']} epochs of the whole pool, {result['protocol']}, "
             f"descriptor {result['descriptor']}; mean ± s.d. over seeds",
             "", "| training set | n | epochs | energy MAE, within 1 eV/atom (meV/atom) "
             "| energy MAE, all | force RMSE (eV/Å) | vs whole: within / all "
             "| DFT core-hours (predicted) |",
             "|---|---|---|---|---|---|---|---|"]
    rows = _rows(result)
    pool_hours = next((r["predicted_core_hours_pool"] for _, runs in rows for r in runs
                       if "predicted_core_hours_pool" in r), None)
    for label, runs in rows:
        ratios = " / ".join(f"{np.mean([r.get(key, np.nan) for r in runs]) / w:.2f}"
                            for key, w in zip(keys, whole))
        lines.append(
            f"| {label} | {runs[0]['n_train']} | {runs[0]['epochs']} "
            f"| {_stat(runs, lambda r: r.get(keys[0]), '{:.1f}')} "
            f"| {_stat(runs, lambda r: r[keys[1]], '{:.1f}')} "
            f"| {_stat(runs, lambda r: r['force_rmse_ev_per_a'], '{:.3f}')} | {ratios} "
            f"| {_stat(runs, lambda r: r.get('predicted_core_hours_kept', pool_hours), '{:.1f}')}"
            " |")
    for method in ARMS:
        if method != "random" and (line := _against_random(result, method)):
            lines += ["", line]
    if "linear" in result:
        linear = result["linear"]
        lines += ["", f"Linear model (ridge on the descriptor, crystals only; within 1 eV/atom, "
                  f"meV/atom): whole pool {linear['whole']:.1f}; "
                  f"{round(100 * result['fraction'])} % by " + "; ".join(
                      f"{m} {_stat([{'v': v} for v in linear[m]], lambda r: r['v'], '{:.1f}')}"
                      for m in LINEAR_METHODS) + " (leverage and random: 5 seeds)"]
    reported = [(label, runs) for label, runs in rows if all("report" in r for r in runs)]
    if not reported:
        return "\n".join(lines)
    columns = [c for c in REPORT_COLUMNS
               if any(c[0] in r["report"] for _, runs in reported for r in runs)]
    lines += ["", "| training set | checks passed | " + " | ".join(c[1] for c in columns) + " |",
              "|---|---|" + "---|" * len(columns)]
    for label, runs in reported:
        cells = [_stat(runs, lambda r, key=key: r["report"].get(key), fmt)
                 for key, _, fmt in columns]
        passed = ", ".join(f"{r['report']['checks_passed']}/{r['report']['checks']}"
                           for r in runs)
        lines.append(f"| {label} | {passed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _descriptors() -> dict:
    from pyiron_assyst.stages import select

    return {"radial": select.RadialDescriptor, "power": select.PowerSpectrum}


class _Lazy(dict):
    def __missing__(self, key: str) -> type:
        self.update(_descriptors())
        return dict.__getitem__(self, key)


DESCRIPTORS = _Lazy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Cu only, 1 seed, 5 epochs")
    parser.add_argument("--fraction", type=float, default=0.4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-list", type=int, nargs="*", default=None,
                        help="run these selection seeds instead of range(--seeds)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the whole-pool fit")
    parser.add_argument("--equal-steps", action=argparse.BooleanOptionalAction, default=True,
                        help="train subsets for epochs / fraction (same optimizer steps; "
                             "default on)")
    parser.add_argument("--descriptor", choices=("power", "radial"), default="power")
    parser.add_argument("--arms", nargs="*", default=["whole", "leverage", "random"],
                        choices=("whole", *ARMS),
                        help="whole pool and selections (cost: leverage per core-hour; not "
                             "in the default)")
    parser.add_argument("--group-step", type=int, default=3)
    parser.add_argument("--sweep", type=float, nargs="*", default=[0.2, 0.3, 0.6])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                        help="also run each model's transferability report (default on)")
    parser.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp") + "/bench_select",
                        help="pool cache and fits; a fit already done there is read back")
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--json", help="write the results here (default: "
                        "results/select_<case>.json)")
    parser.add_argument("--cases", nargs="*", default=["unary", "binary"],
                        help="which cases to run (default both)")
    args = parser.parse_args(argv)
    cases = [("unary Cu 1-3", ["Cu"], 3), ("binary Cu-Ag 1-2", ["Cu", "Ag"], 2)]
    cases = [c for c in cases if c[0].split()[0] in args.cases]
    if args.quick:
        args.seeds, args.epochs, args.sweep, args.group_step = 1, 5, [], 12
        cases = cases[:1]
    tables = []
    for name, elements, max_atoms in cases:
        result = run_case(name, elements, max_atoms, args)
        slug = name.split()[0] + ("_quick" if args.quick else "")
        target = Path(args.json) if args.json else HERE / "results" / f"select_{slug}.json"
        target.write_text(json.dumps(result, indent=1))
        tables.append(markdown(result))
        print(tables[-1], flush=True)
    if args.markdown:
        Path(args.markdown).write_text("\n\n".join(tables) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
