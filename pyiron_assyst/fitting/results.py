"""What a transferability report holds: its rows, curves, checks and traces.

:class:`TransferabilityResult` is filled by
:func:`~pyiron_assyst.fitting.transferability.transferability` and written by
:func:`~pyiron_assyst.fitting.report_files.write_report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pyiron_assyst.fitting.stability import Check, MDTrace

__all__ = ["Row", "TransferabilityResult"]


@dataclass(frozen=True)
class Row:
    """One quantity of the report: reference and model value, their difference, the unit, and a
    note where a value could not be computed (it is then NaN and the note says why)."""

    quantity: str
    unit: str
    reference: float
    model: float
    note: str = ""

    @property
    def difference(self) -> float:
        """``model - reference``."""
        return self.model - self.reference


@dataclass
class TransferabilityResult:
    """Numbers and curves of one report.

    ``rows`` hold the table; ``curves["<element> <phase>"]`` the volumes (Å³/atom) and energies
    per atom (eV) of reference and model; ``parity[name]`` reference and model values of the
    held-out and MD energies per atom (eV) and force components (eV/Å); ``checks`` the
    pass/fail criteria, ``md`` the traces of the MD driven by the model, ``clusters`` the dimer
    and trimer curves (distance in Å, energies per atom in eV), ``formation`` the formation
    energies ``(reference, model)`` in eV/atom by compound, and ``ground_states`` the
    reference's phase the defects and MD of each element were built on.
    """

    rows: list[Row] = field(default_factory=list)
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    parity: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    md: list[MDTrace] = field(default_factory=list)
    clusters: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    formation: dict[str, tuple[float, float]] = field(default_factory=dict)
    ground_states: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every pass/fail check holds (``True`` when there are none)."""
        return all(check.passed for check in self.checks)

    def value(self, quantity: str) -> Row:
        """The row of ``quantity``."""
        for row in self.rows:
            if row.quantity == quantity:
                return row
        raise KeyError(f"no row {quantity!r}; rows: {[r.quantity for r in self.rows]}")

    def table(self):  # -> pandas.DataFrame
        """The rows as a DataFrame (quantity, unit, reference, model, difference, note)."""
        import pandas as pd

        return pd.DataFrame([{"quantity": r.quantity, "unit": r.unit, "reference": r.reference,
                              "model": r.model, "difference": r.difference, "note": r.note}
                             for r in self.rows])
