"""The default main job before and after it ends with labels: time and the cost of label + curate.

Run::

    python benchmarks/bench_main_job.py                  # this tree against commit ec05485
    python benchmarks/bench_main_job.py --before REF --repeats 2

The main job is what ``scripts/run-example.sh`` runs: ``pyiron-assyst run`` on its defaults (Cu,
1-3 atoms, all 230 space groups, EMT, a local pool on all cores, figures drawn) into a fresh
project. It runs once with the package as of ``--before`` (exported with ``git archive``; the
pipeline then stopped at the final filter) and once with this tree (sample to curate), each in
a fresh interpreter from the command line, as a user runs it. Reported: the wall time of each
(fastest of the repeats, interpreter start included), their ratio, and from the new run's
``summary.json`` the wall time of the label, isolated-atom and curate stages and their share
of the rest of the pipeline. Results go to ``benchmarks/results/main_job.json`` and
``benchmarks/MAIN_JOB.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_common import machine  # noqa: E402

NEW_STAGES = ("label", "isolated_atoms", "curate")
"""Stages the main job gained: the labels, the isolated-atom energies, the curation."""


def export_package(ref: str, destination: Path) -> Path:
    """The package as of ``ref`` (``git archive``) under ``destination``; returns it."""
    destination.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "pyiron_assyst"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
    return destination


def main_job(pythonpath: Path, output: Path) -> tuple[float, dict[str, Any]]:
    """Wall time (s) of ``pyiron-assyst run -o output`` with ``pythonpath``, and its summary."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pyiron_assyst.cli", "run", "-o", str(output)],
                   env=env, check=True, capture_output=True, cwd=output.parent)
    seconds = time.perf_counter() - start
    return seconds, json.loads((output / "summary.json").read_text())


def measure(before: str, repeats: int) -> dict[str, Any]:
    """Both main jobs ``repeats`` times each, alternating; the fastest of each."""
    info = machine()
    runs: dict[str, list[tuple[float, dict[str, Any]]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="pyiron_assyst_main_job_") as tmp:
        old = export_package(before, Path(tmp) / "before")
        for i in range(repeats):
            for name, path in (("before", old), ("after", REPO)):
                runs[name].append(main_job(path, Path(tmp) / f"{name}-{i}"))
    best = {name: min(results, key=lambda r: r[0]) for name, results in runs.items()}
    stages = {s["stage"]: s for s in best["after"][1]["stages"]}
    added = sum(stages[s]["wall_time_s"] for s in NEW_STAGES)
    pipeline = sum(s["wall_time_s"] for s in best["after"][1]["stages"])
    return {
        "before_ref": before, "repeats": repeats, "machine": info,
        "load_end": machine()["load"],
        "before_s": best["before"][0], "after_s": best["after"][0],
        "ratio_after_before": best["after"][0] / best["before"][0],
        "training_set_before": best["before"][1]["training_set"],
        "training_set_after": best["after"][1]["training_set"],
        "stages_after": {k: {"in": v["in"], "out": v["out"], "dropped": v["dropped"],
                             "wall_time_s": v["wall_time_s"]} for k, v in stages.items()},
        "label_curate_s": added, "stages_s": pipeline,
        "label_curate_over_rest": added / (pipeline - added),
        "label_force_calls_note": "relaxed structures keep their relaxation single points",
        "all_runs_s": {k: [r[0] for r in v] for k, v in runs.items()},
    }


def render(result: dict[str, Any]) -> str:
    """The markdown table of a measurement."""
    m = result["machine"]
    label = result["stages_after"]["label"]
    curate = result["stages_after"]["curate"]
    dropped = ", ".join(f"{k}: {v}" for k, v in sorted(curate["dropped"].items())) or "none"
    rows = [
        ("main job before (sample to final filter), s", f"{result['before_s']:.1f}",
         f"package as of {result['before_ref']}; training set "
         f"{result['training_set_before']} unlabelled structures"),
        ("main job now (sample to curate), s", f"{result['after_s']:.1f}",
         f"training set {result['training_set_after']} labelled, curated structures"),
        ("now / before", f"{result['ratio_after_before']:.2f}", "wall time, interpreter "
         "start, figures and writing included"),
        ("label + isolated atoms + curate, s", f"{result['label_curate_s']:.1f}",
         f"label: {label['in']} structures; curate dropped {dropped}"),
        ("label + curate / the other stages", f"{result['label_curate_over_rest']:.2f}",
         "stage wall times of the new run's summary.json"),
    ]
    lines = [
        "# The default main job with labels and curation", "",
        f"Command: `python benchmarks/bench_main_job.py --before {result['before_ref']} "
        f"--repeats {result['repeats']}`  ",
        f"Date: {m['date']}; {m['cpu']}, {m['cores']} cores, load average {m['load']} at the "
        f"start, {result['load_end']} at the end  ",
        "Job: `pyiron-assyst run` on its defaults (what `scripts/run-example.sh` runs): Cu, 1-3 "
        "atoms, all 230 space groups, EMT, a local pool on all cores, figures drawn. Fastest "
        f"of {result['repeats']} run(s) each; all runs (s): {result['all_runs_s']}.", "",
        "| quantity | value | note |", "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows), "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="ec05485",
                        help="git revision of the package before labels (default ec05485)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each job (default 1)")
    parser.add_argument("--output", type=Path, default=HERE,
                        help="directory for MAIN_JOB.md and results/main_job.json")
    args = parser.parse_args(argv)
    result = measure(args.before, args.repeats)
    (args.output / "results").mkdir(parents=True, exist_ok=True)
    (args.output / "results" / "main_job.json").write_text(json.dumps(result, indent=1))
    text = render(result)
    (args.output / "MAIN_JOB.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
