"""Faults: a calculator that raises, returns NaN or hangs costs its structure, never the stage.

Time limits are enforced by killing and replacing local worker processes (with everything they
started), by SIGALRM in executorlib workers and, on the main thread, in serial runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest
from ase import Atoms
from ase.build import bulk

from pyiron_assyst.calculators import AseCalculator
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.execution.executors import Executor, iter_tasks, run_tasks
from pyiron_assyst.execution.tasks import TaskError
from pyiron_assyst.stages.relax import PositionRelax, relax
from tests.support.processes import alive
from tests.support.timing import slack

TWO = Executor(kind="process", max_workers=2, chunk_size=2, task_timeout=slack(3.0))


def cells(*sizes: int) -> list[Atoms]:
    out = []
    for n in sizes:
        atoms = bulk("Cu", "fcc", a=3.6).repeat((n, 1, 1))
        atoms.rattle(0.02, seed=n)
        out.append(atoms)
    return out


def hanging(**kwargs) -> AseCalculator:
    return AseCalculator("tests.support.faulty_calculators:HangingEMT", kwargs=kwargs)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def die_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)
    return x


def pid(_: object) -> int:
    return os.getpid()


def blas_threads(_: object) -> tuple[str | None, list[int]]:
    import numpy  # noqa: F401 - loads its BLAS
    from threadpoolctl import threadpool_info

    return os.environ.get("OMP_NUM_THREADS"), [p["num_threads"] for p in threadpool_info()]


@pytest.mark.slow
def test_raise_nan_and_hang_drop_only_their_structures():
    calculator = hanging(hang_natoms=2, raise_natoms=3, nan_natoms=4)
    start = time.perf_counter()
    outs, report = relax(cells(1, 2, 3, 4, 5, 1), PositionRelax(), calculator, TWO)
    assert time.perf_counter() - start < 10 * TWO.task_timeout
    assert [len(o) for o in outs] == [1, 5, 1]
    assert report.drop_counts() == {"timeout": 1, "calculator_error": 1, "non_finite": 1}
    assert report.failures == report.drops
    assert "timeout: 1" in report.summary()
    assert "calculator_error: 1" in report.summary()
    (timeout,) = [d for d in report.drops if d.reason == "timeout"]
    assert f"no result within {TWO.task_timeout:g} s" in timeout.detail


@pytest.mark.slow
def test_a_hang_deaf_to_signals_is_killed_with_the_code_it_started(tmp_path):
    child = tmp_path / "child.pid"
    calculator = hanging(hang_natoms=2, block_alarm=True, child=str(child))
    executor = Executor(kind="process", max_workers=1, task_timeout=slack(2.0), chunk_size=3)
    before = run_tasks(pid, [0], executor)
    outs, report = relax(cells(1, 2, 3), PositionRelax(), calculator, executor)
    assert [len(o) for o in outs] == [1, 3]
    assert report.drop_counts() == {"timeout": 1}
    assert not alive(int(child.read_text()))  # the external "code" died with its worker
    assert run_tasks(pid, [0], executor) != before  # the worker was replaced


def test_serial_runs_time_out_on_the_main_thread():
    executor = Executor(kind="serial", task_timeout=slack(0.5))
    outs, report = relax(cells(1, 2), PositionRelax(), hanging(hang_natoms=2), executor)
    assert len(outs) == 1
    assert report.drop_counts() == {"timeout": 1}
    assert run_tasks(nap, [0.01], executor) == [0.01]  # the alarm is off again


def test_serial_runs_off_the_main_thread_warn_that_the_limit_is_not_enforced(caplog):
    results = []
    executor = Executor(kind="serial", task_timeout=0.05)
    with caplog.at_level(logging.WARNING, logger="pyiron_assyst.execution.executors"):
        thread = threading.Thread(target=lambda: results.append(run_tasks(nap, [0.2], executor)))
        thread.start()
        thread.join()
    assert results == [[0.2]]
    assert "not enforced" in caplog.text


def test_a_dying_worker_fails_only_its_own_task():
    executor = Executor(kind="process", max_workers=2, chunk_size=4)
    results = run_tasks(die_on_three, list(range(8)), executor)
    assert [r for r in results if not isinstance(r, TaskError)] == [0, 1, 2, 4, 5, 6, 7]
    assert results[3].reason == "crashed"  # the failure kind of a killed process
    assert "exit code 1" in str(results[3])


def test_stopping_early_stops_the_busy_workers():
    executor = Executor(kind="process", max_workers=2, chunk_size=1)
    run_tasks(pid, [0, 1], executor)  # workers up
    tasks = iter_tasks(nap, [0.0, 30.0, 30.0], executor)
    assert next(tasks) == (0, 0.0)
    tasks.close()
    start = time.perf_counter()
    assert run_tasks(nap, [0.0, 0.0], executor) == [0.0, 0.0]
    assert time.perf_counter() - start < min(slack(10.0), 29.0)  # not waiting for 30-s tasks


def test_workers_limit_blas_threads_to_their_share_of_the_cores():
    workers = 2
    results = run_tasks(blas_threads, [0, 1], Executor(kind="process", max_workers=workers,
                                                       chunk_size=1))
    share = max(1, (os.cpu_count() or 1) // workers)
    for variable, threads in results:
        assert threads
        assert all(n <= share for n in threads)
        if "OMP_NUM_THREADS" not in os.environ:
            assert variable == str(share)


def test_task_timeout_is_checked_and_round_trips():
    executor = Executor(task_timeout=60)
    assert executor.task_timeout == 60.0
    assert isinstance(executor.task_timeout, float)
    assert config_from_json(executor.to_json()) == executor
    for bad in (0, -1.0, float("nan"), float("inf"), True, "60"):
        with pytest.raises(ConfigError, match="Executor.task_timeout"):
            Executor(task_timeout=bad)


@pytest.mark.slow
def test_executorlib_workers_time_out_by_alarm():
    executor = Executor(kind="single_node", max_workers=1, task_timeout=slack(1.0), chunk_size=2)
    results = run_tasks(nap, [30.0, 0.1], executor)
    assert isinstance(results[0], TaskError)
    assert results[0].reason == "timeout"
    assert results[1] == 0.1


@pytest.mark.slow
def test_a_hanging_structure_in_the_macro_is_dropped_and_counted():
    import pyiron_workflow as pwf

    from pyiron_assyst.stages.sample import Formulas, SampleConfig
    from pyiron_assyst.workflow.macro import assyst

    executor = Executor(kind="process", max_workers=2, task_timeout=slack(3.0))
    result = pwf.node(assyst).run(
        formulas=Formulas.range("Cu", 1, 3),
        sample_config=SampleConfig(spacegroups=(191, 221, 225, 229), seed=1),
        calculator=hanging(hang_natoms=2), executor=executor)
    assert result.exception is None
    volume = result.outputs["volume_report"]
    n_two = sum(len(s) == 2 for s in result.outputs["sampled"])
    assert n_two > 0
    assert volume.drop_counts() == {"timeout": n_two}
    assert all(len(s) == 1 for s in result.outputs["relaxed"])


def test_failed_relaxations_and_labels_are_dropped_under_the_childs_uuid():
    """A failure is recorded under the uuid the structure would have had (the derived child of
    its input), so a resumed or repaired run can name what is missing; not the input's uuid."""
    from pyiron_assyst.core.lineage import child_uuid, ensure_identity, uuid_of
    from pyiron_assyst.stages.label import label

    faulty = AseCalculator("tests.support.faulty_calculators:FaultyEMT",
                           kwargs={"raise_natoms": 2})
    inputs = [ensure_identity(a) for a in cells(1, 2)]
    config = PositionRelax()
    serial = Executor(kind="serial")
    relaxed, report = relax(inputs, config, faulty, serial)
    tag = f"{config.config_hash()}+{faulty.config_hash()}"
    assert [d.uuid for d in report.drops] == [child_uuid(uuid_of(inputs[1]), config.step, tag)]
    assert uuid_of(relaxed[0]) == child_uuid(uuid_of(inputs[0]), config.step, tag)
    labelled, report = label(inputs, faulty, serial)
    assert [d.uuid for d in report.drops] == [
        child_uuid(uuid_of(inputs[1]), "label", faulty.config_hash())]
    assert uuid_of(labelled[0]) == child_uuid(uuid_of(inputs[0]), "label", faulty.config_hash())
