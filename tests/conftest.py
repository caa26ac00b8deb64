"""Shared test set-up.

* The test package may be imported by JSON configs (faulty calculators in ``tests.support``).
* In CI (``CI=true``) a skipped test or module is a failure: a missing dependency (graphviz,
  mace, SLURM, the reference implementation, a network install) must break the run, not thin
  it out quietly. Outside CI, skips stay skips, with their reason in the summary (``-ra``).
"""

from __future__ import annotations

import os

import pytest

from pyiron_assyst.core.config import register_import_prefix

register_import_prefix("tests")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    report.longrepr = f"skipped in CI (CI=true), which counts as a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        _fail_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        _fail_skip(report)
