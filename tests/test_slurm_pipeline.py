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


def test_label_command_on_slurm_equals_a_serial_label(tmp_path):
    """``pyiron-assyst label`` with a SLURM executor: every new single point is a SLURM job,
    and the relabelled run equals one labelled in this process."""
    import shutil

    from pyiron_assyst.calculators import Morse
    from pyiron_assyst.cli.main import main
    from pyiron_assyst.storage import Project

    source = tmp_path / "source.toml"
    source.write_text('[formulas]\nelements = ["Cu"]\nmax_atoms = 1\n'
                      '[sample_config]\ntype = "SampleConfig"\nspacegroups = [221, 225, 229]\n'
                      '[executor]\ntype = "Executor"\nkind = "serial"\n')
    assert main(["run", str(source), "-o", str(tmp_path / "a"), "--no-figures"]) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    cluster = tmp_path / "label.toml"
    cluster.write_text('[label]\ntype = "Morse"\n[executor]\ntype = "Executor"\n'
                       f'kind = "slurm_cluster"\ncache_directory = "{tmp_path / "jobs"}"\n')
    assert main(["label", str(tmp_path / "a"), "--settings", str(cluster), "--name", "dft",
                 "--no-figures"]) == 0
    assert main(["label", str(tmp_path / "b"), "--reference", "morse", "--serial", "--name",
                 "dft", "--no-figures"]) == 0
    on_slurm = Project(tmp_path / "a").load_stage("dft", "training_set")
    here = Project(tmp_path / "b").load_stage("dft", "training_set")
    assert fingerprint(on_slurm) == fingerprint(here)
    assert Project(tmp_path / "a").load_configs("dft")["reference"] == Morse()
    report = Project(tmp_path / "a").load_reports("dft")["label_report"]
    jobs = list((tmp_path / "jobs").rglob("*_o.h5"))
    assert len(jobs) >= report.n_in > 0  # the single points really ran as SLURM jobs
