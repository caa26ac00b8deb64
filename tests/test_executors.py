"""Dispatch: ordered results on every local kind, broken workers recorded, resources mapped."""

import os

import pytest

from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.execution.executors import Executor, run_tasks
from pyiron_assyst.execution.tasks import TaskError


def square(x: int) -> int:
    return x * x


def die_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)  # a worker process dies without a Python exception
    return x


@pytest.mark.parametrize("executor", [
    Executor(kind="serial"),
    Executor(kind="process", max_workers=2),
    Executor(kind="process", max_workers=2, chunk_size=1),
    Executor(kind="single_node", max_workers=2),
])
def test_results_come_back_in_input_order(executor):
    items = list(range(23))
    assert run_tasks(square, items, executor) == [x * x for x in items]


def test_a_dead_worker_marks_its_chunk_failed_and_others_finish():
    results = run_tasks(die_on_three, list(range(8)), Executor(kind="process", max_workers=2,
                                                               chunk_size=1))
    assert isinstance(results[3], TaskError)
    assert "WorkerDied" in str(results[3])
    assert results[:3] + results[4:] == [0, 1, 2, 4, 5, 6, 7]  # the other workers go on
    assert run_tasks(square, [2, 3], Executor(kind="process", max_workers=2)) == [4, 9]


def test_empty_input_needs_no_workers():
    assert run_tasks(square, [], Executor(kind="process")) == []


def test_resource_dict_carries_gpus_partition_and_time():
    executor = Executor(kind="slurm_cluster", cores=4, gpus_per_core=1, run_time_max=3600,
                        partition="gpu", scheduler_args=("--exclusive",))
    assert executor.resource_dict() == {
        "cores": 4, "threads_per_core": 1, "gpus_per_core": 1, "run_time_max": 3600,
        "slurm_cmd_args": ["--exclusive", "--partition=gpu"]}
    assert config_from_json(executor.to_json()) == executor
    hash(executor)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"kind": "cloud"}, "kind"), ({"max_workers": -1}, "max_workers"), ({"cores": 0}, "cores"),
    ({"run_time_max": 0}, "run_time_max"), ({"chunk_size": -2}, "chunk_size"),
])
def test_bad_executor_fields_fail_at_construction(kwargs, field):
    with pytest.raises(ConfigError, match=f"Executor.{field}"):
        Executor(**kwargs)


def _blas_threads(_: object) -> int:
    from threadpoolctl import threadpool_info

    return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


@pytest.mark.parametrize("threads", [1, 2])
def test_serial_tasks_run_with_blas_limited_to_the_executors_threads(threads):
    """OpenBLAS on all cores made EMT relaxations on a node thread 3-6x slower (issue 7)."""
    import scipy.linalg  # noqa: F401 - BLAS libraries loaded before the outer limit
    from threadpoolctl import threadpool_limits

    executor = Executor(kind="serial", threads_per_core=threads)
    with threadpool_limits(limits=4, user_api="blas"):  # a process default above the limit
        assert _blas_threads(None) == 4
        seen = run_tasks(_blas_threads, [0, 1], executor)
        assert seen == [threads, threads]
        assert _blas_threads(None) == 4  # restored after the stage
