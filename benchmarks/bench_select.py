"""Less DFT for the same potential? Fits on the whole ASSYST pool against fits on a selection.

For each case (Cu with 1-3 atoms; Cu-Ag with 1-2 atoms) the script builds the labelled ASSYST set
(EMT as the reference), holds 20 % of the lineages out (the same held-out set for every fit),
and fits the quick MACE model of ``pyiron-assyst fit`` on

(a) the whole remaining pool,
(b) ``--fraction`` of it chosen by the select stage (leverage sampling), for each seed,
(c) the same fraction chosen uniformly at random, for each seed,

then a sweep of fractions with (b). Every model is evaluated on the held-out set: energy MAE
(meV/atom) and force RMSE (eV/Å). Target (the issue's): (b) within 1.2x of (a)'s energy MAE and
better than (c) beyond its seed scatter. Results: ``results/select_<case>.json`` (or ``--json``)
and a markdown table on stdout (``--markdown`` writes it to a file as well).

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
    """Energy MAE (meV/atom, ``free_energy``) and force RMSE (eV/Å) of ``model`` on the set."""
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.stages.label import label

    predicted, _ = label([a.copy() for a in held_out], model, Executor(kind="serial"),
                         relabel=True)
    by_uuid = {a.info["parent"]: a for a in predicted}  # a label is a child of its input
    de, df = [], []
    for ref in held_out:
        got = by_uuid[ref.info["uuid"]]
        n = len(ref)
        de.append((got.get_potential_energy(force_consistent=True)
                   - ref.get_potential_energy(force_consistent=True)) / n)
        df.append((got.get_forces() - ref.get_forces()).ravel())
    return {"energy_mae_mev_per_atom": 1000 * float(np.mean(np.abs(de))),
            "force_rmse_ev_per_a": float(np.sqrt(np.mean(np.concatenate(df) ** 2)))}


def fit_and_score(train: list[Atoms], held_out: list[Atoms], epochs: int, seed: int,
                  directory: Path) -> dict[str, float]:
    """Fit on ``train`` (or read the scores of the same fit from ``directory``) and score it."""
    done = directory / "scores.json"
    if done.exists():
        scores = json.loads(done.read_text())
        if scores.get("epochs") == epochs and scores.get("n_train") == len(train):
            return scores
    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.fitting.mace import FitConfig, fit

    config = FitConfig(epochs=epochs, num_channels=16, r_max=4.5, correlation=2,
                       radial_mlp=(32, 32), batch_size=16, ema_decay=0.99,
                       default_dtype="float64", seed=seed, threads=1)
    start = time.perf_counter()
    model, _ = fit(train, config, Executor(kind="serial"), directory)
    scores = held_out_errors(model, held_out)
    scores["fit_seconds"] = time.perf_counter() - start
    scores["n_train"] = len(train)
    scores["epochs"] = epochs
    done.write_text(json.dumps(scores))
    return scores


def chosen(pool: list[Atoms], method: str, fraction: float, seed: int, descriptor: str
           ) -> tuple[list[Atoms], dict]:
    from pyiron_assyst.stages.select import SelectConfig, select

    config = SelectConfig(method=method, fraction=fraction, seed=seed,
                          descriptor=DESCRIPTORS[descriptor]())
    kept, report = select(pool, config)
    return kept, dict(report.notes)


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
                             work / f"{tag}_{label}")

    if "whole" in args.arms:
        out["whole"] = run(pool, "whole")
    for method in ("leverage", "random"):
        if method not in args.arms:
            continue
        runs = []
        for seed in args.seed_list or range(args.seeds):
            subset, notes = chosen(pool, method, args.fraction, seed, args.descriptor)
            where = f"{method}_{args.descriptor}_{args.fraction}_{seed}" if method == "leverage" \
                else f"random_{args.fraction}_{seed}"
            runs.append({**run(subset, where), "seed": seed, **notes})
        out[method] = runs
    out["sweep"] = []
    for fraction in args.sweep:
        subset, notes = chosen(pool, "leverage", fraction, 0, args.descriptor)
        scores = run(subset, f"leverage_{args.descriptor}_{fraction}_0")
        out["sweep"].append({**scores, "fraction": fraction, **notes})
    return out


def markdown(result: dict) -> str:
    whole = result.get("whole", {}).get("energy_mae_mev_per_atom", float("nan"))

    def stats(runs: list[dict], key: str) -> tuple[float, float]:
        values = [r[key] for r in runs]
        return float(np.mean(values)), float(np.std(values, ddof=1) if len(values) > 1 else 0.0)

    lines = [f"**{result['case']}**: pool {result['n_pool']}, held out {result['n_held_out']}, "
             f"{result['epochs']} epochs of the whole pool, {result['protocol']}, "
             f"descriptor {result['descriptor']}",
             "", "| training set | n | epochs | energy MAE (meV/atom) | force RMSE (eV/Å) "
             "| vs whole |", "|---|---|---|---|---|---|"]
    if "whole" in result:
        lines.append(f"| whole pool | {result['whole']['n_train']} | {result['whole']['epochs']} "
                     f"| {whole:.1f} | {result['whole']['force_rmse_ev_per_a']:.3f} | 1.00 |")
    for method in ("leverage", "random"):
        if not result.get(method):
            continue
        runs = result[method]
        e, se = stats(runs, "energy_mae_mev_per_atom")
        f, sf = stats(runs, "force_rmse_ev_per_a")
        seeds = ", ".join(str(r["seed"]) for r in runs)
        spread = (f"{e:.1f} ± {se:.1f} | {f:.3f} ± {sf:.3f}" if len(runs) > 1
                  else f"{e:.1f} | {f:.3f}")
        label = f"seed{'s' * (len(runs) > 1)} {seeds}"
        lines.append(f"| {round(100 * result['fraction'])} % by {method} ({label}) "
                     f"| {runs[0]['n_train']} | {runs[0]['epochs']} | {spread} "
                     f"| {e / whole:.2f} |")
    lines.extend(f"| {round(100 * run['fraction'])} % by leverage (seed 0) | {run['n_train']} "
                 f"| {run['epochs']} | {run['energy_mae_mev_per_atom']:.1f} "
                 f"| {run['force_rmse_ev_per_a']:.3f} "
                 f"| {run['energy_mae_mev_per_atom'] / whole:.2f} |" for run in result["sweep"])
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
                        choices=("whole", "leverage", "random"))
    parser.add_argument("--group-step", type=int, default=3)
    parser.add_argument("--sweep", type=float, nargs="*", default=[0.2, 0.3, 0.6])
    parser.add_argument("--workers", type=int, default=2)
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
