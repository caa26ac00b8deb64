"""The whole macro through a real SLURM cluster gives the same training set as a serial run."""

from __future__ import annotations

import pyiron_workflow as pwf
import pytest

from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.filters import DistanceFilter
from pyiron_assyst.stages.perturbations import PerturbConfig, Rattle, Stretch
from pyiron_assyst.stages.sample import Formulas, SampleConfig
from pyiron_assyst.workflow.macro import assyst
from tests.support.slurm import slurm  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm")]

CONFIGS = {
    "sample_config": SampleConfig(spacegroups=(221, 225, 229), seed=7),
    "perturb_config": PerturbConfig(perturbations=(Rattle(0.1, supercell=True),
                                                   Stretch(0.05, 0.02)),
                                    filter=DistanceFilter(1.0), retries=5, seed=7),
}


def fingerprint(structures):
    return [(s.info["uuid"], s.numbers.tobytes(), s.positions.tobytes(), s.cell.array.tobytes(),
             None if s.calc is None else s.get_potential_energy()) for s in structures]


def run(executor: Executor):
    result = pwf.node(assyst).run(formulas=Formulas.range("Cu", 1, 3), executor=executor,
                                  **CONFIGS)
    assert result.exception is None, result.exception
    return result.outputs


def test_slurm_cluster_run_equals_serial_run(tmp_path):
    serial = run(Executor(kind="serial"))
    cluster = run(Executor(kind="slurm_cluster", cache_directory=str(tmp_path / "jobs")))
    assert len(serial["relaxed"]) > 0
    for name in ("sampled", "volume_relaxed", "relaxed", "perturbed", "training_set"):
        assert fingerprint(cluster[name]) == fingerprint(serial[name]), name
    jobs = list((tmp_path / "jobs").rglob("*_o.h5"))
    assert len(jobs) >= len(serial["relaxed"])  # the relaxations really ran as SLURM jobs
