"""Project storage of 100,000 labelled structures: this tree against an earlier commit.

Run::

    python benchmarks/bench_storage_ab.py --before 5e6bd96^      # before the checksums
    python benchmarks/bench_storage_ab.py --before REF --n 10000 --repeats 5

The structures of :mod:`bench_storage` are built once and pickled; then, alternating the two
trees (``--before`` exported with ``git archive``, and this one), a fresh interpreter loads them
and times ``Project.save_run``, ``load_stage`` and ``stage_table``. Alternating, with the
fastest of ``--repeats`` runs per tree, keeps a busy machine's load out of the ratio as far as
it can be. Prints one line per run and the fastest times, with after / before.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

CHILD = """
import json, pickle, sys, time
from pathlib import Path
from pyiron_assyst.storage import Project
structures = pickle.load(open(sys.argv[1], "rb"))
project = Project(Path(sys.argv[2]))
t = time.perf_counter(); project.save_run("bench", stages={"all": structures})
save = time.perf_counter() - t
t = time.perf_counter(); loaded = project.load_stage("bench", "all")
load = time.perf_counter() - t
t = time.perf_counter(); table = project.stage_table("bench", "all")
table_s = time.perf_counter() - t
assert len(loaded) == len(table) == len(structures)
print(json.dumps({"save": save, "load": load, "table": table_s}))
"""
KEYS = ("save", "load", "table")


def export_tree(ref: str, into: Path) -> Path:
    """The package as of git ``ref``, unpacked into ``into``; its root."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "pyiron_assyst"],
                             check=True, capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def timed_run(tree: Path, data: Path, project: Path) -> dict[str, float]:
    """Save, load and table times (s) of the pickled structures with the package in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(data), str(project)], env=env,
                         check=True, capture_output=True, text=True, cwd=tree).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    from bench_storage import make_structures

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="git ref of the earlier package")
    parser.add_argument("--n", type=int, default=100_000, help="number of structures")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tree")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        trees = {"before": export_tree(args.before, tmp_path / "before"), "after": REPO}
        data = tmp_path / "structures.pkl"
        with open(data, "wb") as f:
            pickle.dump(make_structures(args.n), f, protocol=pickle.HIGHEST_PROTOCOL)
        for i in range(args.repeats):
            for name, tree in trees.items():
                result = timed_run(tree, data, tmp_path / f"{name}-{i}")
                runs[name].append(result)
                load = os.getloadavg()[0]
                print(f"{name:<7} run {i}: " + "  ".join(f"{k} {result[k]:6.2f} s" for k in KEYS)
                      + f"   (load {load:.1f})", flush=True)
    best = {name: {k: min(r[k] for r in rs) for k in KEYS} for name, rs in runs.items()}
    print(f"\n{args.n} structures, fastest of {args.repeats} alternating runs per tree "
          f"(before = {args.before})")
    for k in KEYS:
        print(f"{k:<6} before {best['before'][k]:7.2f} s   after {best['after'][k]:7.2f} s   "
              f"after/before {best['after'][k] / best['before'][k]:.2f}")


if __name__ == "__main__":
    main()
