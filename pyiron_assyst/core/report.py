"""The one stage contract: every stage returns its structures and a :class:`StageReport`.

A report counts what went in and came out and names every structure (or sampling grid point)
that was dropped, with a short machine-readable ``reason`` and a human-readable ``detail``. The
count identity ``n_out + len(drops) == n_candidates`` is checked at construction, so a stage
cannot lose a structure without saying so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pyiron_assyst.core.config import Config, require

__all__ = ["FAILURE_REASONS", "Drop", "StageReport"]

FAILURE_REASONS = frozenset(
    {"calculator_error", "non_finite", "timeout", "scf_not_converged", "crashed",
     "generator_error", "generator_timeout"}
)
"""Drop reasons that mean a computation failed (as opposed to a deliberate rejection)."""


@dataclass(frozen=True)
class Drop(Config):
    """One structure (or grid point) that a stage did not produce, or produced with a flag.

    Parameters
    ----------
    uuid
        Identity of the structure that would have been produced (derived, see
        :mod:`pyiron_assyst.core.lineage`), or of the input structure that was rejected.
    reason
        Short category, e.g. ``"incompatible_group"``, ``"calculator_error"``, ``"filter"``.
    detail
        Human-readable explanation (error text, filter name, grid point).
    """

    uuid: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        require(bool(self.reason), "Drop", "reason", "a non-empty string", self.reason)


@dataclass(frozen=True)
class StageReport(Config):
    """What one stage did: counts, drops with reasons, flags, timings.

    Parameters
    ----------
    stage
        Name of the stage, e.g. ``"sample"``, ``"relax:volume"``.
    n_in
        Number of input structures (for sampling: number of formulas).
    n_candidates
        Units of work the stage attempted (grid points, structures, perturbation copies).
    n_out
        Number of structures produced.
    drops
        Every candidate that produced no structure, with its reason.
    flagged
        Structures that were produced but carry a warning (e.g. relaxation not converged).
    wall_time
        Wall-clock time of the stage in s.
    calculator_time
        Time spent inside calculators in s (summed over workers).
    force_calls
        Number of calculator evaluations (summed over structures).
    notes
        Further numbers the stage reports, as ``(name, value)`` pairs, e.g. the select
        stage's predicted core-hours saved; the name says the unit.
    """

    stage: str
    n_in: int
    n_candidates: int
    n_out: int
    drops: tuple[Drop, ...] = ()
    flagged: tuple[Drop, ...] = ()
    wall_time: float = 0.0
    calculator_time: float = 0.0
    force_calls: int = 0
    notes: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple((str(k), float(v)) for k, v in self.notes))
        require(
            self.n_out + len(self.drops) == self.n_candidates,
            "StageReport",
            "n_candidates",
            f"n_out + len(drops) = {self.n_out + len(self.drops)} (every candidate accounted for)",
            self.n_candidates,
        )
        require(self.n_in >= 0, "StageReport", "n_in", ">= 0", self.n_in)

    @property
    def failures(self) -> tuple[Drop, ...]:
        """Drops whose reason is a failed computation (see :data:`FAILURE_REASONS`)."""
        return tuple(d for d in self.drops if d.reason in FAILURE_REASONS)

    def drop_counts(self) -> dict[str, int]:
        """Number of drops per reason."""
        return dict(Counter(d.reason for d in self.drops))

    def flag_counts(self) -> dict[str, int]:
        """Number of flagged structures per reason."""
        return dict(Counter(d.reason for d in self.flagged))

    def summary(self) -> str:
        """One line: stage, counts, drops per reason, time."""
        drops = ", ".join(f"{r}: {n}" for r, n in sorted(self.drop_counts().items()))
        flags = ", ".join(f"{r}: {n}" for r, n in sorted(self.flag_counts().items()))
        text = f"{self.stage}: {self.n_in} in, {self.n_out} out of {self.n_candidates}"
        if drops:
            text += f"; dropped {len(self.drops)} ({drops})"
        if flags:
            text += f"; flagged {len(self.flagged)} ({flags})"
        if self.notes:
            text += "; " + ", ".join(f"{k}: {v:.6g}" for k, v in self.notes)
        return text + f"; {self.wall_time:.2f} s"
