"""The model driving itself: MD checks and cluster curves of the transferability report.

EMT against itself must pass with zero energy error; a deliberately attractive short-range
Morse potential (equilibrium at 1.2 Å, long-ranged attraction) must collapse and be reported as
failing, first in the checks and at the top of the written report.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from ase import Atoms

from pyiron_assyst.calculators import EMT, Morse
from pyiron_assyst.fitting.bulk import Phase
from pyiron_assyst.fitting.report_files import md_figure, md_limits
from pyiron_assyst.fitting.stability import (
    cluster_checks,
    cluster_curve,
    md_checks,
    md_trace,
    vacancy_cell,
)
from pyiron_assyst.fitting.transferability import (
    TransferabilityConfig,
    TransferabilityResult,
    _clusters,
    _Element,
    _stability,
    write_report,
)
from pyiron_assyst.numerics.distances import shortest_distance_in

A_EMT = 3.59  # Å, EMT Cu
NEAREST = A_EMT / math.sqrt(2)
COLLAPSING = Morse(epsilon=1.0, r0=1.2, rho0=2.0, rcut1=3.0, rcut2=4.0)
SHORT = TransferabilityConfig(stability_runs=(("vacancy", 1500.0, 0.12),), stability_every=10,
                              cluster_fractions=(0.6, 0.7, 1.0))
FCC = Phase("fcc", A_EMT**3 / 4, 0.0, 133.0)
CU = _Element("Cu", "", {"reference": {"fcc": FCC}, "model": {"fcc": FCC}}, "fcc", NEAREST)


def _source(config):
    calc = config.get_calculator()
    return lambda atoms: calc


def test_vacancy_cell_and_shortest_distance_in():
    cell = vacancy_cell("Cu", A_EMT, 2)
    assert len(cell) == 31
    assert shortest_distance_in(cell) == pytest.approx(NEAREST)
    assert shortest_distance_in(Atoms("Cu")) == math.inf  # one atom, no images: no pair
    assert shortest_distance_in(Atoms("Cu2", [[0, 0, 0], [0, 0, 1.7]])) == pytest.approx(1.7)


def test_emt_driving_itself_passes_with_zero_error():
    trace = md_trace(vacancy_cell("Cu", A_EMT), _source(EMT()), _source(EMT()), 1500.0, 60,
                     every=10, seed=1, collapse=0.65 * NEAREST)
    assert trace.step == [0, 10, 20, 30, 40, 50, 60]
    assert trace.stopped == ""
    assert trace.time[-1] == 120.0
    assert np.abs(trace.error()).max() < 1e-12  # round-off of the wrapped positions
    assert trace.shortest[0] == pytest.approx(NEAREST)
    assert min(trace.shortest) > 0.7 * NEAREST
    checks = md_checks(trace, 0.65 * NEAREST, 0.02)
    assert [c.passed for c in checks] == [True, True]
    assert checks[1].value < 1e-9


def test_md_check_says_where_its_largest_error_is():
    """The energy check names the step of the largest error, and says when it is the
    starting cell's own (a static error the model's MD did not make)."""
    from pyiron_assyst.fitting.stability import MDTrace

    def trace(model: list[float]) -> MDTrace:
        return MDTrace(1500.0, 20, "Cu vacancy", step=[0, 10, 20], time=[0.0, 20.0, 40.0],
                       shortest=[2.5] * 3, model=model, reference=[-3.0, -2.9, -2.8])

    _, static = md_checks(trace([-2.97, -2.89, -2.79]), 1.6, 0.02)
    assert static.value == pytest.approx(30.0)
    assert not static.passed
    assert "largest at step 0 (the starting cell's static error)" in static.detail
    _, grown = md_checks(trace([-2.99, -2.89, -2.77]), 1.6, 0.02)
    assert grown.value == pytest.approx(30.0)
    assert "largest at step 20; drift of the error 20 meV/atom" in grown.detail
    assert "static" not in grown.detail


def test_a_collapsing_model_fails_and_stops_early():
    trace = md_trace(vacancy_cell("Cu", A_EMT), _source(COLLAPSING), _source(EMT()), 1500.0,
                     1000, every=10, seed=1, collapse=0.65 * NEAREST)
    assert trace.stopped.startswith("collapsed at step")
    assert trace.step[-1] < 1000
    assert trace.shortest[-1] < 0.65 * NEAREST
    shortest, energy = md_checks(trace, 0.65 * NEAREST, 0.02)
    assert not shortest.passed
    assert not energy.passed
    assert "collapsed" in shortest.detail


def test_cluster_curves_and_checks():
    distances = [0.6 * NEAREST, 0.7 * NEAREST, NEAREST]
    same = {kind: cluster_curve(symbols, distances, _source(EMT()), _source(EMT()))
            for kind, symbols in (("dimer", ("Cu", "Cu")), ("trimer", ("Cu",) * 3))}
    assert np.all(same["dimer"]["model"] == same["dimer"]["reference"])
    # EMT dimers are repulsive towards short distances
    assert np.all(np.diff(same["dimer"]["reference"]) < 0)
    assert all(c.passed for c in cluster_checks(same, 0.7 * NEAREST, 0.1))
    other = {kind: cluster_curve(symbols, distances, _source(COLLAPSING), _source(EMT()))
             for kind, symbols in (("dimer", ("Cu", "Cu")), ("trimer", ("Cu",) * 3))}
    checks = cluster_checks(other, 0.7 * NEAREST, 0.1)
    assert not any(c.passed for c in checks)
    # the 0.6 point is below the checked range: it does not enter the worst error
    worst = np.abs(other["dimer"]["model"] - other["dimer"]["reference"])[1:].max()
    assert checks[0].value == pytest.approx(1000 * worst)
    # a range up to 0.7 x: only that point is checked, the nearest-neighbour one is named
    errors = np.abs(other["dimer"]["model"] - other["dimer"]["reference"])
    (narrow, _) = cluster_checks(other, 0.65 * NEAREST, 0.1, up_to=0.75 * NEAREST)
    assert narrow.name == "dimer curve: |E_model - E_ref| 1.65-1.90 Å"
    assert narrow.value == pytest.approx(1000 * errors[1])
    assert narrow.detail.endswith(f"beyond 1.90 Å (not checked): {1000 * errors[2]:.3g} "
                                  f"meV/atom at {NEAREST:.2f} Å")


def test_report_says_fail_at_the_top(tmp_path):
    result = TransferabilityResult()
    _stability(SHORT, CU, _source(EMT()), _source(COLLAPSING), result)
    _clusters(SHORT, {"Cu": CU}, _source(EMT()), _source(COLLAPSING), result)
    assert not result.passed
    write_report(result, tmp_path)
    text = (tmp_path / "transferability.md").read_text()
    assert text.startswith('Verdict: <span style="color:red">**FAIL**</span>: MD vacancy 1500 K')
    assert (tmp_path / "md_traces.png").is_file()
    assert (tmp_path / "clusters.png").is_file()
    good = TransferabilityResult()
    _stability(SHORT, CU, _source(EMT()), _source(EMT()), good)
    _clusters(SHORT, {"Cu": CU}, _source(EMT()), _source(EMT()), good)
    assert good.passed
    assert [c.name for c in good.checks] == [
        "MD vacancy 1500 K: shortest distance", "MD vacancy 1500 K: |E_model - E_ref|",
        "dimer Cu-Cu curve: |E_model - E_ref| 1.78-2.54 Å",
        "trimer Cu-Cu-Cu curve: |E_model - E_ref| 1.78-2.54 Å"]


def test_md_figure_draws_the_checks_limits():
    """The MD picture shows where a run fails: the distance limit and the ± energy tolerance
    of its checks as dashed lines, beside each trace."""
    result = TransferabilityResult()
    _stability(SHORT, CU, _source(EMT()), _source(EMT()), result)
    distances, tolerances = md_limits(result)
    assert distances == [pytest.approx(SHORT.min_distance * NEAREST)]
    assert tolerances == [pytest.approx(1000 * SHORT.md_tolerance)]
    fig = md_figure(result)
    top, bottom = fig.axes
    dashed = {ax: sorted(float(line.get_ydata()[0]) for line in ax.get_lines()
                         if line.get_linestyle() == "--") for ax in (top, bottom)}
    assert dashed[top] == distances
    assert dashed[bottom] == [-tolerances[0], tolerances[0]]
    assert len(top.get_lines()) == len(result.md) + 1  # one trace and its limit
    assert [t.get_text() for t in bottom.get_legend().get_texts()] == ["limit ±20 meV/atom"]
    assert bottom.get_yscale() == "linear"
    _stability(SHORT, CU, _source(EMT()), _source(COLLAPSING), result)  # eV/atom off
    collapsed = md_figure(result)
    assert collapsed.axes[1].get_yscale() == "symlog"  # the ± band stays visible
    plt.close(fig)
    plt.close(collapsed)
