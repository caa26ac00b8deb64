"""ASE calculators that misbehave on purpose, for the fault-handling tests.

Reachable from configs as ``AseCalculator("tests.support.faulty_calculators:FaultyEMT", ...)`` (the
``tests`` prefix is registered in ``conftest.py``). They are plain EMT otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import numpy as np
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT


class FaultyEMT(EMT):
    """EMT that raises for one structure size and returns NaN forces for another.

    Parameters
    ----------
    raise_natoms
        Raise ``RuntimeError`` when evaluating a structure with this many atoms.
    nan_natoms
        Return NaN forces for a structure with this many atoms ...
    nan_after
        ... from its ``nan_after + 1``-th evaluation on (0: at once; > 0: mid-relaxation).
    """

    def __init__(self, raise_natoms: int = -1, nan_natoms: int = -1, nan_after: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.raise_natoms = raise_natoms
        self.nan_natoms = nan_natoms
        self.nan_after = nan_after
        self.evaluations = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        n = len(atoms if atoms is not None else self.atoms)
        if n == self.raise_natoms:
            raise RuntimeError(f"FaultyEMT refuses {n} atoms")
        super().calculate(atoms, properties, system_changes)
        if n == self.nan_natoms:
            self.evaluations += 1
            if self.evaluations > self.nan_after:
                self.results["forces"] = np.full((n, 3), np.nan)


class CountingEMT(EMT):
    """EMT that counts its real evaluations in the class attribute ``calls`` (this process)."""

    calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        type(self).calls += 1
        super().calculate(atoms, properties, system_changes)


class SmearedEMT(EMT):
    """EMT whose ``free_energy`` differs from ``energy`` by ``-shift`` eV per atom (like DFT)."""

    def __init__(self, shift: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shift = shift

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results["free_energy"] = self.results["energy"] - self.shift * len(self.atoms)


def _setting(value: Any, variable: str, default: Any) -> Any:
    """A keyword argument if given, else the environment variable ``variable``, else default."""
    if value not in (None, ""):
        return value
    return type(default)(os.environ.get(variable, default))


class LoggedEMT(EMT):
    """EMT that logs, delays or fails each real evaluation, as told by kwargs or environment.

    The environment variables keep the calculator config (and so every uuid and cache key)
    the same between a reference run and a logged, slowed-down or failing one.

    Parameters
    ----------
    log
        File to which every evaluation appends ``"<pid> <natoms> <uuid>"`` (the uuid in
        ``atoms.info``, ``-`` if none; ``$ASSYST_TEST_LOG``).
    delay
        Seconds to sleep before each evaluation (``$ASSYST_TEST_DELAY``).
    fail_natoms
        Raise ``RuntimeError`` for structures with this many atoms ...
    fail_flag
        ... while this file exists (``$ASSYST_TEST_FAIL_FLAG``; empty: always).
    """

    def __init__(self, log: str = "", delay: float | None = None, fail_natoms: int = -1,
                 fail_flag: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log = _setting(log, "ASSYST_TEST_LOG", "")
        self.delay = _setting(delay, "ASSYST_TEST_DELAY", 0.0)
        self.fail_natoms = fail_natoms
        self.fail_flag = _setting(fail_flag, "ASSYST_TEST_FAIL_FLAG", "")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        atoms = atoms if atoms is not None else self.atoms
        n = len(atoms)
        if self.log:
            with open(self.log, "a") as log:
                log.write(f"{os.getpid()} {n} {atoms.info.get('uuid', '-')}\n")
        if self.delay:
            time.sleep(self.delay)
        if n == self.fail_natoms and (not self.fail_flag or os.path.exists(self.fail_flag)):
            raise RuntimeError(f"LoggedEMT refuses {n} atoms")
        super().calculate(atoms, properties, system_changes)


class HangingEMT(FaultyEMT):
    """:class:`FaultyEMT` that also never returns for structures with ``hang_natoms`` atoms.

    With ``block_alarm`` the hang also ignores ``SIGALRM`` (like a C or Fortran routine that
    never returns to Python), so only killing its process stops it. With ``child`` it first
    starts ``sleep 1000`` as a child process and writes its pid to the file ``child``, as a
    calculator that runs an external code would.
    """

    def __init__(self, hang_natoms: int = 2, block_alarm: bool = False, child: str = "",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hang_natoms = hang_natoms
        self.block_alarm = block_alarm
        self.child = child

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        n = len(atoms if atoms is not None else self.atoms)
        if n == self.hang_natoms:
            if self.child:
                process = subprocess.Popen(["sleep", "1000"])
                with open(self.child, "w") as out:
                    out.write(str(process.pid))
            if self.block_alarm:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            while True:
                time.sleep(1.0)
        super().calculate(atoms, properties, system_changes)
