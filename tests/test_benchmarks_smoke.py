"""Smoke test of the side-by-side benchmarks: the scripts run on the tiny case and the results
table has every row. No timing is asserted (the machine is shared and noisy)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("sample", "volume relax", "full relax", "perturb", "filter", "label")
SETS = ("sampled", "volume relaxed", "relaxed", "perturbed", "final", "labelled")

pytest.importorskip("assyst", reason="the reference implementation (test extra) is needed")
pytestmark = pytest.mark.slow  # about a minute: two scripts, both codes, five variants


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "RESULTS.md"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick",
                           "--output", str(out)], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def _rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ")]


def test_results_table_has_a_row_per_stage_code_and_core_count(quick_run):
    out, stdout = quick_run
    text = out.read_text()
    assert text.strip() in stdout
    rows = _rows(text)
    keys = {(r[0], r[1], r[2]) for r in rows if r[0] in STAGES}
    for stage in STAGES:
        assert (stage, "assyst 1.0.0", "1") in keys
        assert (stage, "pyiron_assyst", "1") in keys
    for stage in ("sample", "volume relax", "full relax", "label"):
        assert (stage, "pyiron_assyst", "2") in keys


def test_results_cover_targets_pipeline_equivalence_and_machine(quick_run):
    out, _ = quick_run
    text = out.read_text()
    rows = _rows(text)
    names = [r[0] for r in rows]
    for target in ("sampling, 2 cores (× reference)", "perturb + filter, 1 core (× reference)",
                   "whole pipeline, 1 core (× reference)", "whole pipeline, 2 cores vs 1 core",
                   "pyiron_workflow macro over direct calls (%)"):
        assert target in names
    chains = [(r[0], r[1]) for r in rows if len(r) > 1]
    assert ("assyst 1.0.0", "1") in chains
    assert ("pyiron_assyst", "2") in chains
    for name in SETS:
        assert name in names
    assert "Machine:" in text
    assert "Python" in text
    assert "assyst 1.0.0" in text


def test_raw_results_are_written_as_json(quick_run):
    out, _ = quick_run
    stages = json.loads((out.parent / "results" / "quick_stages.json").read_text())
    assert {(r["stage"], r["impl"], r["cores"]) for r in stages} >= {
        (s, "pyiron_assyst", 1) for s in STAGES}
    pipeline = json.loads((out.parent / "results" / "quick_pipeline.json").read_text())
    assert pipeline["identical_2_cores"] is True  # same structures whatever the executor
    counts = {row["set"]: (row["n_reference"], row["n_ours"]) for row in pipeline["equivalence"]}
    assert all(n > 0 for pair in (counts[s] for s in SETS) for n in pair)
