"""Resubmission safety on a real SLURM cluster: kill the driver, start it again.

A driver process relaxes five structures through ``Executor(kind="slurm_cluster")`` (one
``sbatch`` job per relaxation, two run at a time on the two-core test node, each takes
``DELAY`` s). It is killed with SIGKILL once two jobs have finished while others still run or
wait in the queue. A second driver with the same inputs must return all five results without
submitting a single job and without computing anything twice (it picks the finished ones from
the cache and waits for the running and pending ones). A third driver with one structure
changed by 1e-4 Å, and a fourth with a changed calculator config, must submit exactly one job
each and return the new inputs' results, never the stale cached ones.

Submissions are counted by a ``sbatch`` on the drivers' ``PATH`` that logs each call and then
runs the real one; computations are counted by a marker file that every relaxation writes
when its calculator is built (in the job).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.relax import VolumeRelax, relax
from tests.support.slurm import REPO, slurm  # noqa: F401  (session fixture)

DELAY = 4.0  # s per relaxation job, long enough to kill the driver while jobs run
LATTICE = [3.45, 3.5, 3.55, 3.65, 3.7]  # Å, fcc Cu
RELAX = VolumeRelax(max_steps=20)


@dataclass(frozen=True)
class SlowEMT(CalculatorConfig):
    """EMT that takes ``delay`` s to set up and leaves a marker per structure it is built for.

    Parameters
    ----------
    delay
        Seconds slept when the calculator is built (stands in for an expensive calculation).
    marker_dir
        Where ``<structure uuid>.<SLURM job>.<pid>`` files are written (``""``: none).
    asap_cutoff
        As :class:`ase.calculators.emt.EMT` (changes the energies).
    """

    delay: float = 0.0
    marker_dir: str = ""
    asap_cutoff: bool = False

    def get_calculator(self) -> BaseCalculator:
        from ase.calculators.emt import EMT

        return EMT(asap_cutoff=self.asap_cutoff)

    def calculator_for(self, atoms: Atoms) -> BaseCalculator:
        if self.marker_dir:
            name = f"{uuid_of(atoms)}.{os.environ.get('SLURM_JOB_ID')}.{os.getpid()}"
            Path(self.marker_dir, name).touch()
        time.sleep(self.delay)
        return self.get_calculator()


def structures(shift: float = 0.0) -> list[Atoms]:
    """fcc Cu at the lattice constants of ``LATTICE``, the first one ``shift`` Å longer."""
    return [bulk("Cu", "fcc", a=a + (shift if i == 0 else 0.0)) for i, a in enumerate(LATTICE)]


def drive(cache: str, markers: str, shift: float = 0.0, asap_cutoff: bool = False,
          count: int = len(LATTICE)) -> None:
    """The driver process: relax on SLURM and print the energies (eV) as JSON."""
    executor = Executor(kind="slurm_cluster", cache_directory=cache)
    calculator = SlowEMT(DELAY, markers, asap_cutoff)
    relaxed, report = relax(structures(shift)[:count], RELAX, calculator, executor)
    assert report.n_out == count, report.summary()
    print(json.dumps([a.get_potential_energy() for a in relaxed]))


def serial_energies(shift: float = 0.0, asap_cutoff: bool = False,
                    count: int = len(LATTICE)) -> list[float]:
    relaxed, _ = relax(structures(shift)[:count], RELAX, SlowEMT(asap_cutoff=asap_cutoff),
                       Executor(kind="serial"))
    return [a.get_potential_energy() for a in relaxed]


class Harness:
    """Starts drivers with a logging ``sbatch`` first on ``PATH``; counts what they did."""

    def __init__(self, root: Path) -> None:
        self.cache, self.markers, self.bin = root / "cache", root / "markers", root / "bin"
        for directory in (self.cache, self.markers, self.bin):
            directory.mkdir()
        self.log = root / "sbatch.log"
        self.log.touch()
        real = shutil.which("sbatch")
        assert real is not None
        wrapper = self.bin / "sbatch"
        wrapper.write_text(f'#!/bin/bash\necho "$PWD" >> {self.log}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)

    def start(self, **kwargs) -> subprocess.Popen:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        code = ("from pyiron_assyst.core.config import register_import_prefix; "
                "register_import_prefix('tests'); from tests.test_slurm_resubmit import drive; "
                f"drive({str(self.cache)!r}, {str(self.markers)!r}, {args})")
        env = dict(os.environ, PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def run(self, **kwargs) -> list[float]:
        proc = self.start(**kwargs)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    def submissions(self) -> int:
        return len(self.log.read_text().splitlines())

    def finished(self) -> int:
        return len(list(self.cache.glob("*_o.h5")))

    def computed(self) -> dict[str, int]:
        """Relaxations computed, per structure uuid."""
        counts: dict[str, int] = {}
        for path in self.markers.iterdir():
            uuid = path.name.split(".")[0]
            counts[uuid] = counts.get(uuid, 0) + 1
        return counts


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_a_killed_driver_resumes_without_resubmitting_and_never_reads_stale_results(tmp_path):
    h = Harness(tmp_path)
    n = len(LATTICE)
    first = h.start()
    # kill it when two jobs have finished and at least one more is running
    _wait(lambda: h.finished() >= 2 and len(h.computed()) > h.finished(), 180,
          "two finished and one running job")
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    assert h.submissions() == n  # all were submitted before the kill
    done_at_kill = h.finished()
    assert done_at_kill < n  # some were still running or pending

    energies = h.run()  # the second driver: same inputs
    assert energies == serial_energies()  # bit-identical to a local run, in input order
    assert h.submissions() == n  # nothing submitted again
    assert sorted(h.computed().values()) == [1] * n  # nothing computed twice

    changed = h.run(shift=1e-4)  # one lattice constant 1e-4 Å longer: only it is run again
    assert h.submissions() == n + 1
    assert changed == serial_energies(shift=1e-4)
    assert changed[0] != energies[0]
    assert changed[1:] == energies[1:]

    other = h.run(asap_cutoff=True, count=1)  # a changed calculator config: run again
    assert h.submissions() == n + 2
    assert other == serial_energies(asap_cutoff=True, count=1)
    assert other[0] != energies[0]
    assert len(h.computed()) == n + 1
    assert sum(h.computed().values()) == n + 2
