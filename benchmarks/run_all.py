"""Run every side-by-side benchmark and write the results table with the machine it ran on.

Run::

    python benchmarks/run_all.py            # unary and binary cases, many minutes
    python benchmarks/run_all.py --quick    # the tiny case, under a minute (the smoke test)

Each case runs ``bench_stages.py`` (stage by stage, same input for both codes) and
``bench_pipeline.py`` (each code's whole pipeline, and the statistical comparison of the sets)
in fresh interpreters. The full run writes ``benchmarks/RESULTS.md`` and the raw numbers to
``benchmarks/results/``; ``--quick`` writes to a temporary directory unless ``--output`` is
given. The table is printed as well.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import CASES, STAGES, machine  # noqa: E402

REF, OURS = "assyst 1.0.0", "pyiron_assyst"
OURS_ASE = f"{OURS}, ASE LBFGS"


def run_script(script: str, case: str, repeats: int, out: Path, extra: Sequence[str] = ()
               ) -> dict[str, Any] | list[dict[str, Any]]:
    """Run one benchmark script on one case in a fresh interpreter; its JSON result."""
    command = [sys.executable, str(HERE / script), "--case", case, "--repeats", str(repeats),
               "--json", str(out), *extra]
    print("$", " ".join(command[1:]), file=sys.stderr, flush=True)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    subprocess.run(command, check=True, env=env)
    return json.loads(out.read_text())


# --------------------------------------------------------------------------- formatting


def _f(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _ratio(reference: float | None, ours: float | None) -> float | None:
    if not reference or not ours:
        return None
    return reference / ours


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def stage_table(rows: list[dict[str, Any]]) -> list[str]:
    """One row per stage, code and cores; ratios to the reference of the same stage."""
    reference = {r["stage"]: r for r in rows if r["impl"] == REF}
    out = []
    for stage in STAGES:
        for r in (r for r in rows if r["stage"] == stage):
            ref = reference.get(stage)
            is_ref = r["impl"] == REF
            calc = r.get("calc_time")
            out.append([
                stage, r["impl"], str(r["cores"]), _f(r["wall"]), _f(r["cpu"]),
                "1" if is_ref else _x(_ratio(ref and ref["wall"], r["wall"])),
                "1" if is_ref else _x(_ratio(ref and ref["cpu"], r["cpu"])),
                str(r["n_in"]), str(r["n_out"]),
                "–" if r.get("force_calls") is None else str(r["force_calls"]),
                "–" if r.get("converged") is None else f"{100 * r['converged']:.1f} %",
                _f(calc), "–" if not calc else _f(r["wall"] / calc),
                _f(r["peak_mb"], 0),
                _f(r.get("idle_estimate")) if r["cores"] > 1 else "–",
            ])
    header = ["stage", "code", "cores", "wall s", "CPU s", "speed-up (wall)", "speed-up (CPU)",
              "in", "out", "force calls", "converged", "in calculator s", "wall / calculator",
              "peak MB", "idle-core estimate s"]
    return _table(header, out)


def _get(rows: list[dict[str, Any]], stage: str, impl: str, cores: int) -> dict[str, Any] | None:
    for r in rows:
        if r["stage"] == stage and r["impl"] == impl and r["cores"] == cores:
            return r
    return None


def mcnemar(detail: dict[str, int]) -> str:
    """Exact McNemar test of the structures only one code converged (same inputs, paired)."""
    from scipy.stats import binomtest

    only_ref, only_ours = detail["only_reference_converged"], detail["only_ours_converged"]
    if only_ref + only_ours == 0:
        return "no structure converged in one code only"
    p = binomtest(only_ours, only_ref + only_ours, 0.5).pvalue
    return (f"converged in one code only: reference {only_ref}, ours {only_ours} "
            f"(exact McNemar p = {p:.2f})")


def _same_optimizer(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Full relaxation: the relaxed energies of both codes, and pyiron_assyst with ASE's LBFGS
    (the reference's optimizer), which separates the tool's speed from the optimizer's."""
    ref = _get(rows, "full relax", REF, 1)
    if ref is None:
        return []
    lines = []
    for impl in (OURS, OURS_ASE):
        r = _get(rows, "full relax", impl, 1)
        if r is None:
            continue
        extra = r.get("extra", {})
        if impl == OURS_ASE:
            counts = [round(x["converged"] * x["n_in"]) for x in (r, ref)]
            detail = extra.get("per_structure")
            lines.append(["full relax with ASE's LBFGS, 1 core (× reference)",
                          _f(_ratio(ref["wall"], r["wall"])), "–", "–",
                          f"force calls {r['force_calls']} vs {ref['force_calls']}; converged "
                          f"{counts[0]} vs {counts[1]} of {r['n_in']}"
                          + (f"; {mcnemar(detail)}" if detail else "")])
        e = extra.get("energy_ks")
        if e:
            label = "default optimizer" if impl == OURS else "ASE's LBFGS"
            lines.append([f"full relax ({label}): relaxed energy/atom, KS statistic",
                          _f(e["ks"], 3), "–", "–",
                          f"p = {e['p']:.2g}; medians {e['median_reference']:.3f} (reference) vs "
                          f"{e['median_ours']:.3f} eV"])
    return lines


def targets(rows: list[dict[str, Any]], pipeline: dict[str, Any]) -> list[str]:
    """The issue's targets, each with the measured value and whether it holds."""
    lines: list[list[str]] = []

    def add(name: str, value: float | None, goal: str, holds: bool | None, note: str = ""
            ) -> None:
        verdict = "–" if holds is None else ("yes" if holds else "**no**")
        lines.append([name, "–" if value is None else f"{value:.2f}", goal, verdict, note])

    def wall(stage: str, impl: str, cores: int, key: str = "wall") -> float | None:
        r = _get(rows, stage, impl, cores)
        return None if r is None else r.get(key)

    ratio = _ratio(wall("sample", REF, 1), wall("sample", OURS, 2))
    add("sampling, 2 cores (× reference)", ratio, "≥ 3", None if ratio is None else ratio >= 3)
    ratio = _ratio(wall("sample", REF, 1), wall("sample", OURS, 2, "idle_estimate"))
    add("sampling, 2 cores, idle-core estimate (× reference)", ratio, "≥ 3",
        None if ratio is None else ratio >= 3, "estimate: busiest worker's + driver's CPU time")
    ratio = _ratio(wall("sample", REF, 1), wall("sample", OURS, 1))
    add("sampling, 1 core (× reference)", ratio, "–", None)
    for kind in ("volume relax", "full relax"):
        ref, ours = _get(rows, kind, REF, 1), _get(rows, kind, OURS, 1)
        if not ref or not ours:
            continue
        ratio = _ratio(ref["wall"], ours["wall"])
        cpu = _ratio(ref["cpu"], ours["cpu"])
        add(f"{kind}, 1 core, per structure (× reference)", ratio, "≥ 2",
            None if ratio is None else ratio >= 2, f"CPU time: {_x(cpu)}")
        add(f"{kind}: force calls, ours / reference", ours["force_calls"] / ref["force_calls"],
            "≤ 1", ours["force_calls"] <= ref["force_calls"],
            f"{ours['force_calls']} vs {ref['force_calls']}")
        detail = ours.get("extra", {}).get("per_structure")
        counts = [round(r["converged"] * r["n_in"]) for r in (ours, ref)]
        add(f"{kind}: converged fraction, ours − reference (%)",
            100 * (counts[0] / ours["n_in"] - counts[1] / ref["n_in"]), "≥ 0",
            counts[0] / ours["n_in"] >= counts[1] / ref["n_in"],
            f"{counts[0]} vs {counts[1]} of {ours['n_in']}"
            + (f"; {mcnemar(detail)}" if detail else ""))
        if detail:
            same = detail["same_force_calls"]
            add(f"{kind}: structures with the same force calls (%)",
                100 * same / max(1, ours["n_in"]), "–", None,
                ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in detail.items()
                          if k != "same_force_calls"))
    lines += _same_optimizer(rows)
    ref_pf = [wall(s, REF, 1) for s in ("perturb", "filter")]
    ours_pf = [wall(s, OURS, 1) for s in ("perturb", "filter")]
    if None not in ref_pf and None not in ours_pf:
        ratio = sum(ref_pf) / sum(ours_pf)
        cpu = (sum(wall(s, REF, 1, "cpu") for s in ("perturb", "filter"))
               / sum(wall(s, OURS, 1, "cpu") for s in ("perturb", "filter")))
        add("perturb + filter, 1 core (× reference)", ratio, "≥ 2", ratio >= 2,
            f"CPU time: {_x(cpu)}")
    perturbed = _get(rows, "perturb", OURS, 1) or {}
    for key, v in perturbed.get("extra", {}).get("equivalence", {}).items():
        add(f"perturbation of the same parents: child/parent {key}, KS statistic", v["ks"],
            "–", None, f"p = {v['p']:.2f}; medians {v['median_reference']:.3f} (reference) vs "
            f"{v['median_ours']:.3f}")
    ref_label, ours_label = _get(rows, "label", REF, 1), _get(rows, "label", OURS, 1)
    if ref_label and ours_label:
        add("label: force calls, ours / reference",
            ours_label["force_calls"] / max(1, ref_label["force_calls"]), "–", None,
            "the relaxed structures keep their relaxation's single point")
    chains = {(c["impl"], c["cores"]): c for c in pipeline["chains"]}
    ref_chain, one, two = chains[(REF, 1)], chains[(OURS, 1)], chains[(OURS, 2)]
    ratio = ref_chain["wall"] / one["wall"]
    add("whole pipeline, 1 core (× reference)", ratio, "≥ 2", ratio >= 2,
        f"CPU time: {_x(ref_chain['cpu'] / one['cpu'])}")
    ratio = one["wall"] / two["wall"]
    add("whole pipeline, 2 cores vs 1 core", ratio, "≥ 1.7", ratio >= 1.7,
        f"load average at the start: {pipeline.get('load', '–')}")
    if two.get("idle_estimate"):
        ratio = one["wall"] / two["idle_estimate"]
        add("whole pipeline, 2 cores vs 1 core, idle-core estimate", ratio, "≥ 1.7",
            ratio >= 1.7, "estimate: busiest worker's + driver's CPU time")
    macro = pipeline["macro"]
    overhead = 100 * (macro["wall"] / macro["direct_wall"] - 1)
    add("pyiron_workflow macro over direct calls (%)", overhead, "≤ 10", overhead <= 10,
        f"{macro['wall']:.2f} s vs {macro['direct_wall']:.2f} s "
        + ("(sample to curate)" if "curated" in macro else "(sample to filter)"))
    for stage in ("volume relax", "full relax", "label"):
        for impl, cores in ((OURS, 1), (OURS, 2), (REF, 1)):
            r = _get(rows, stage, impl, cores)
            if r and r.get("calc_time"):
                add(f"{stage}, {impl} {cores} core(s): wall / time in calculator",
                    r["wall"] / r["calc_time"], "small", None,
                    "calculator time summed over workers" if cores > 1 else "")
    return _table(["target", "measured", "goal", "holds", "note"], lines)


def pipeline_table(pipeline: dict[str, Any]) -> list[str]:
    rows = []
    for chain in pipeline["chains"]:
        times = chain["stage_times"]
        counts = chain["counts"]
        rows.append([chain["impl"], str(chain["cores"]), _f(chain["wall"]), _f(chain["cpu"]),
                     *(_f(times.get(s)) for s in STAGES),
                     " / ".join(str(counts.get(k, "–")) for k in
                                ("sampled", "volume relaxed", "relaxed", "perturbed", "final",
                                 "labelled")),
                     str(chain["force_calls"]), _f(chain["calc_time"]), _f(chain["peak_mb"], 0)])
    macro = pipeline["macro"]
    rows.append([f"{OURS} macro (pyiron_workflow)", "1", _f(macro["wall"]), "–",
                 *(["(one node)"] + ["–"] * 4 + ["in macro" if "curated" in macro
                                                  else "not in macro"]),
                 f"labelled {macro['training_set']}, curated {macro['curated']}"
                 if "curated" in macro else f"final {macro['training_set']}",
                 "–", "–", "–"])
    header = ["code", "cores", "wall s", "CPU s", *(f"{s} s" for s in STAGES),
              "sampled / vol. relaxed / relaxed / perturbed / final / labelled", "force calls",
              "in calculator s", "peak MB"]
    return _table(header, rows)


def equivalence_table(pipeline: dict[str, Any]) -> list[str]:
    rows = []
    for r in pipeline["equivalence"]:
        cells = [r["set"], str(r["n_reference"]), str(r["n_ours"])]
        for key in ("volume", "distance", "energy"):
            value = r[key]
            if value["ks"] is None or not math.isfinite(value["ks"]):
                cells.append("–")
                continue
            cells.append(f"{value['ks']:.3f} (p={value['p']:.2g}); "
                         f"{_f(value['median_reference'])} vs {_f(value['median_ours'])}")
        rows.append(cells)
    header = ["set", "n reference", "n ours", "volume/atom: KS (p); medians Å³",
              "nearest distance: KS (p); medians Å", "energy/atom: KS (p); medians eV"]
    return _table(header, rows)


DIFFERENCES = """\
Differences on purpose (why the sets are not identical, structure by structure):

- **Random streams.** The reference draws every structure from one generator shared along the
  grid (and the perturbations from one generator per perturbation object); pyiron_assyst
  derives a stream per structure from the seed and the structure's identity, so its results do
  not depend on batch order or worker count (2 cores give bit-identical sets, checked above).
  The two codes therefore sample different crystals from the same distributions.
- **Sampling retries.** pyiron_assyst retries a grid point when pyxtal gives up or returns atoms
  closer than the tolerance (up to two more draws), and checks compatibility before drawing;
  the reference keeps what the single draw gives.
- **Symmetry of the sampled crystals** is found with spglib (pyiron_assyst) instead of a second
  pyxtal pass (reference); it is recorded, not used to drop structures.
- **RandomChoice.** The notebook's ``RandomChoice(hydro, shear, 0.7)`` picks the *shear* branch
  70 % of the time (its ``chance`` is the probability of the second branch) while its text
  says hydrostatic changes are drawn more often; both codes here draw hydrostatic 70 %.
- **Optimizer.** pyiron_assyst's relaxations default to ``SafeLBFGS``: ASE's LBFGS (the
  reference's algorithm, same parameters, the same steps bit for bit until then) that skips
  curvature pairs with ``s·y <= 0``. ASE's LBFGS keeps them; its inverse-Hessian estimate then
  turns indefinite and later steps can point uphill, so many random crystals stop unconverged
  at 100 steps or on a stationary point above the minimum. The default therefore converges
  more often in fewer force calls, and the full-relaxed set is lower in energy and denser than
  the reference's: the reference's unconverged relaxations stop half way from the expanded
  volume-relaxed cells to a dense minimum. The relaxed set and the perturbed set derived from
  it therefore differ in volume and energy on purpose (the table above). The row
  "pyiron_assyst, ASE LBFGS" relaxes with the reference's optimizer: same relaxed energies
  (KS in the targets table), and the speed-up of the tool alone.
- **Cell filter.** pyiron_assyst relaxes cells with its own Fréchet cell filter (same degrees of
  freedom and forces as ASE's ``FrechetCellFilter`` to rounding); chaotic, unconverged
  relaxations can therefore end elsewhere (with ASE's LBFGS a few structures in a hundred take
  a different number of steps, either way).
- **Labels are kept.** A relaxed structure carries its single point and the calculator config
  that made it: the full relaxation starts from the volume relaxation's last evaluation, and the
  label stage reuses the relaxations' single points when it labels with the same calculator
  (the reference evaluates both again). Same numbers, fewer force calls.
- **Reading the KS p-values.** The perturbed set holds eight children per parent, clustered
  around the parent's volume, so a KS test on their absolute volumes treats correlated draws as
  independent and overstates significance (the union inherits this). The perturbation itself is
  compared on the same parents, child by child relative to its parent (targets table): those
  ratios are independent draws.
- **Distance filter cutoff.** The reference searches neighbours within ``2 * max(radius, 2.5) +
  0.1`` Å (5.1 Å here); pyiron_assyst within the largest radius sum (2 Å). Same decisions.
"""


def render(results: dict[str, Any], info: dict[str, Any], command: str) -> str:
    lines = ["# Benchmarks: pyiron_assyst against assyst 1.0.0", "",
             f"Command: `{command}`  ", f"Date: {info['date']}  ",
             f"Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
             f"load average {info['load']} at the start, {info.get('load_end', '–')} at the "
             f"end  ", f"Python {info['python']} on {info['platform']}  ",
             "Packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()), "",
             *([info["note"], ""] if info.get("note") else []),
             "How to read: every number is the fastest of the repeats; *1 core* is a serial run "
             "in one process with BLAS limited to one thread (the reference has no other mode), "
             "*2 cores* uses pyiron_assyst's local pool of two worker processes (the "
             "reference cannot). Speed-up = reference time / pyiron_assyst time on the same "
             "input. CPU time counts this process and its workers; on a shared, loaded machine "
             "it is the steadier measure for one-core runs. Peak MB is the growth of the "
             "resident memory (process and workers) during the stage.", ""]
    for name, result in results.items():
        rows, pipeline = result["stages"], result["pipeline"]
        lines += [f"## Case `{name}`: {pipeline['describe']}", "",
                  "### Stage by stage (same input for both codes)", ""]
        lines += stage_table(rows)
        lines += ["", "### Targets of issue 7", ""]
        lines += targets(rows, pipeline)
        lines += ["", "### Whole pipeline (each code on its own chain)", ""]
        lines += pipeline_table(pipeline)
        lines += ["", f"2-core run bit-identical to the 1-core run: "
                  f"{pipeline['identical_2_cores']}. Label stage: "
                  f"{pipeline['label_implementation']}.", "",
                  "### Statistical equivalence of the sets (two-sample Kolmogorov-Smirnov)", ""]
        lines += equivalence_table(pipeline)
        lines.append("")
    lines += [DIFFERENCES]
    return "\n".join(lines)


README = HERE.parent / "README.md"
_START, _END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def summary(results: dict[str, Any], info: dict[str, Any]) -> str:
    """The targets of every case and the machine, for the README (between its markers)."""
    lines = [f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores, load average "
             f"{info['load']} at the start (`python benchmarks/run_all.py`; the full tables are "
             "in [benchmarks/RESULTS.md](benchmarks/RESULTS.md)).", ""]
    for name, result in results.items():
        lines += [f"**{name}**: {result['pipeline']['describe']}", ""]
        lines += targets(result["stages"], result["pipeline"])
        lines.append("")
    return "\n".join(lines)


def update_readme(text: str, readme: Path = README) -> None:
    """Replace the README's benchmark block (between the markers) with ``text``."""
    content = readme.read_text()
    if _START not in content or _END not in content:
        raise ValueError(f"{readme} lacks the markers {_START} ... {_END}")
    head, rest = content.split(_START, 1)
    _, tail = rest.split(_END, 1)
    readme.write_text(f"{head}{_START}\n{text}\n{_END}{tail}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny case only (smoke test)")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=None)
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per measurement (default 2, 1 with --quick)")
    parser.add_argument("--output", type=Path, default=None, help="where to write RESULTS.md")
    parser.add_argument("--render-only", action="store_true",
                        help="write RESULTS.md from the JSON results of an earlier run")
    args = parser.parse_args(argv)
    cases = args.cases or (["quick"] if args.quick else ["unary", "binary"])
    repeats = args.repeats or (1 if args.quick else 2)
    if args.output is not None:
        output = args.output
    elif args.quick:
        output = Path(tempfile.mkdtemp(prefix="pyiron_assyst_bench_")) / "RESULTS.md"
    else:
        output = HERE / "RESULTS.md"
    raw = output.parent / "results" if args.output or args.quick else HERE / "results"
    raw.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        info = json.loads((raw / "machine.json").read_text())
        results = {case: {"stages": json.loads((raw / f"{case}_stages.json").read_text()),
                          "pipeline": json.loads((raw / f"{case}_pipeline.json").read_text())}
                   for case in cases}
        command = "python benchmarks/run_all.py" + (" --quick" if args.quick else "")
        text = render(results, info, command)
        text += f"\nTotal benchmark time: {info.get('minutes', '–')} min.\n"
        output.write_text(text)
        if output == HERE / "RESULTS.md":
            update_readme(summary(results, info))
        print(text)
        return
    info = machine()
    start = time.perf_counter()
    results: dict[str, Any] = {}
    for case in cases:
        extra = ["--warm-pools"] if args.quick else []
        stages = run_script("bench_stages.py", case, repeats, raw / f"{case}_stages.json", extra)
        pipeline = run_script("bench_pipeline.py", case, repeats, raw / f"{case}_pipeline.json")
        results[case] = {"stages": stages, "pipeline": pipeline}
    info["load_end"] = machine()["load"]
    info["minutes"] = round((time.perf_counter() - start) / 60, 1)
    command = "python benchmarks/run_all.py" + (" --quick" if args.quick else "")
    text = render(results, info, command) + f"\nTotal benchmark time: {info['minutes']} min.\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    (raw / "machine.json").write_text(json.dumps(info, indent=1))
    if output == HERE / "RESULTS.md":
        update_readme(summary(results, info))
    print(text)
    print(f"\nwritten: {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
