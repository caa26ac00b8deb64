"""What one fit did (:class:`FitReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pyiron_assyst.core.config import ADDED_FIELD, Config
from pyiron_assyst.core.report import Drop

__all__ = ["FitReport"]


@dataclass(frozen=True)
class FitReport(Config):
    """What one fit did.

    Parameters
    ----------
    backend
        Fitting code.
    n_in
        Structures given.
    n_train, n_valid
        Structures on the training and the validation side.
    train_roots, valid_roots
        Lineages (root uuids) on each side, sorted.
    drops
        Structures not used, with reason (``"unlabelled"``).
    final_epoch
        Epoch (0-based, MACE's count) of the returned model; always the last: ``epochs - 1``,
        or for a continued fit the start's final epoch ``+ epochs - 1`` (MACE retrains from the
        start's last epoch on).
    device
        Device the training ran on.
    threads
        torch threads of the training process.
    wall_time
        Wall-clock time of the stage in s (0-ish when answered from the cache).
    cached
        Whether the model came from an earlier identical fit.
    model_path
        The model file.
    e0s
        Isolated-atom energies the model uses, ``(symbol, eV)`` (empty for ``"average"``:
        MACE estimates them and logs them).
    e0s_source
        ``"isolated"``, or ``"average"`` with the reason when ``"isolated"`` was asked for.
    continued
        The model file the fit continued (``start`` of
        :func:`~pyiron_assyst.fitting.mace.fit`; empty: a fresh fit).
    epochs
        Epochs this fit trained (``config.epochs``; for a continued fit the epochs added to
        its start's; 0: not recorded, a report stored before this field).
    """

    backend: str
    n_in: int
    n_train: int
    n_valid: int
    train_roots: tuple[str, ...] = ()
    valid_roots: tuple[str, ...] = ()
    drops: tuple[Drop, ...] = ()
    final_epoch: int = -1
    device: str = "cpu"
    threads: int = 1
    wall_time: float = 0.0
    cached: bool = False
    model_path: str = ""
    e0s: tuple[tuple[str, float], ...] = ()
    e0s_source: str = ""
    continued: str = field(default="", metadata=ADDED_FIELD)
    epochs: int = field(default=0, metadata=ADDED_FIELD)

    def summary(self) -> str:
        """One line: sizes of both sides, drops, final epoch, time."""
        text = (f"fit ({self.backend}, {self.device}): {self.n_in} in, {self.n_train} train / "
                f"{self.n_valid} valid ({len(self.train_roots)} / {len(self.valid_roots)} "
                f"lineages)")
        if self.drops:
            text += f"; dropped {len(self.drops)}"
        e0s = ", ".join(f"{s} {e:.4g} eV" for s, e in self.e0s)
        text += f"; E0s {self.e0s_source}" + (f" ({e0s})" if e0s else "")
        if self.continued:
            text += f"; continued {Path(self.continued).parent.name}" + (
                f" for {self.epochs} more epochs" if self.epochs else "")
        return text + f"; final epoch {self.final_epoch}; {self.wall_time:.1f} s" + (
            " (cached)" if self.cached else "")
