"""Failures of a stage, grouped by cause: counted, each with one example message.

Used by every place a user reads about failures: the command's output, ``summary.txt`` /
``summary.json`` and ``status``; and by the rule that a stage in which every structure failed
stops the run.
"""

from __future__ import annotations

from typing import Any

__all__ = ["failure_causes", "failure_lines", "wholly_failed"]


def failure_causes(report: Any) -> dict[str, tuple[int, str]]:
    """``{reason: (count, first line of one example message)}`` of a stage's failures."""
    causes: dict[str, tuple[int, str]] = {}
    for drop in report.failures:
        count, detail = causes.get(drop.reason, (0, drop.detail.splitlines()[0]
                                                  if drop.detail else ""))
        causes[drop.reason] = (count + 1, detail)
    return dict(sorted(causes.items()))


def failure_lines(report: Any) -> list[str]:
    """One line per failure cause of a stage: count and one example message."""
    return [f"  {report.stage} failed: {reason}: {count}" + (f", e.g. {detail!r}" if detail
                                                            else "")
            for reason, (count, detail) in failure_causes(report).items()]


def wholly_failed(reports: list[Any]) -> str:
    """``"stage X: every structure failed (N of N; reason: n, e.g. '...')"`` for the first
    stage in which every candidate failed, else ``""``."""
    for report in reports:
        if report.n_candidates and report.n_out == 0 and len(
                report.failures) == report.n_candidates:
            causes = "; ".join(f"{reason}: {count}" + (f", e.g. {detail!r}" if detail else "")
                               for reason, (count, detail) in failure_causes(report).items())
            return (f"stage {report.stage}: every structure failed ({report.n_candidates} of "
                    f"{report.n_candidates}; {causes})")
    return ""
