"""Dispatch as data: where the per-structure work of an expensive stage runs.

An :class:`Executor` is a frozen description (kind and resources); :func:`run_tasks` fans a
module-level function out over items with it and returns the results in input order. Local
process pools are persistent and shared between stages (workers are spawned once, since each
pays the import of ase and numpy), and tasks are sent in chunks so that a 0.1-s EMT relaxation
does not pay a round trip each.
"""

from __future__ import annotations

import atexit
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor as _FuturesExecutor
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from tqdm.auto import tqdm

from .config import Config, require

__all__ = ["KINDS", "Executor", "TaskError", "run_tasks", "shutdown_pools"]

KINDS = ("serial", "process", "single_node", "slurm_cluster", "slurm_job")

ExecutorKind = Literal["serial", "process", "single_node", "slurm_cluster", "slurm_job"]


@dataclass(frozen=True)
class Executor(Config):
    """Where and with what resources a stage runs its per-structure tasks.

    Parameters
    ----------
    kind
        ``"serial"`` (in this process), ``"process"`` (persistent local worker processes),
        ``"single_node"`` (executorlib ``SingleNodeExecutor``), ``"slurm_cluster"`` (executorlib
        ``SlurmClusterExecutor``: one job per submission) or ``"slurm_job"`` (executorlib
        ``SlurmJobExecutor``: srun inside an allocation).
    max_workers
        Parallel workers for local kinds; ``0`` means all cores of this machine.
    cores
        Cores reserved per task (e.g. MPI ranks of a DFT code).
    threads_per_core
        Threads per core per task.
    gpus_per_core
        GPUs per core per task.
    run_time_max
        Wall-time limit per submission in s (``None``: the scheduler default).
    partition
        Scheduler partition (``None``: the default partition).
    scheduler_args
        Extra scheduler arguments, e.g. ``("--exclusive",)``.
    chunk_size
        Tasks per submission; ``0`` chooses about four chunks per worker locally and one task
        per job on a scheduler.
    cache_directory
        Where executorlib keeps its job files (scheduler kinds).
    """

    kind: ExecutorKind = "process"
    max_workers: int = 0
    cores: int = 1
    threads_per_core: int = 1
    gpus_per_core: int = 0
    run_time_max: int | None = None
    partition: str | None = None
    scheduler_args: tuple[str, ...] = ()
    chunk_size: int = 0
    cache_directory: str | None = None

    def __post_init__(self) -> None:
        require(self.kind in KINDS, "Executor", "kind", f"one of {KINDS}", self.kind)
        require(self.max_workers >= 0, "Executor", "max_workers", ">= 0 (0: all cores)",
                self.max_workers)
        for name in ("cores", "threads_per_core"):
            require(getattr(self, name) >= 1, "Executor", name, ">= 1", getattr(self, name))
        require(self.gpus_per_core >= 0, "Executor", "gpus_per_core", ">= 0", self.gpus_per_core)
        require(self.run_time_max is None or self.run_time_max > 0, "Executor", "run_time_max",
                "None or > 0 s", self.run_time_max)
        require(self.chunk_size >= 0, "Executor", "chunk_size", ">= 0 (0: automatic)",
                self.chunk_size)
        object.__setattr__(self, "scheduler_args", tuple(self.scheduler_args))

    @property
    def workers(self) -> int:
        """Number of parallel workers for local kinds."""
        if self.kind == "serial":
            return 1
        return self.max_workers or (os.cpu_count() or 1)

    def resource_dict(self) -> dict[str, Any]:
        """executorlib ``resource_dict`` of one task."""
        resources: dict[str, Any] = {"cores": self.cores, "threads_per_core": self.threads_per_core}
        if self.gpus_per_core:
            resources["gpus_per_core"] = self.gpus_per_core
        if self.run_time_max is not None:
            resources["run_time_max"] = self.run_time_max
        args = list(self.scheduler_args)
        if self.partition:
            args.append(f"--partition={self.partition}")
        if args:
            resources["slurm_cmd_args"] = args
        return resources


class TaskError(RuntimeError):
    """A task (or its worker) failed outside the task's own error handling."""


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _process_pool(workers: int) -> ProcessPoolExecutor:
    pool = _POOLS.get(workers)
    if pool is None:
        import multiprocessing

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        _POOLS[workers] = pool
    return pool


@atexit.register
def shutdown_pools() -> None:
    """Stop the persistent local worker processes."""
    for pool in _POOLS.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()


def _run_chunk(func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [func(item) for item in items]


def _chunks(n: int, executor: Executor) -> list[range]:
    if executor.chunk_size:
        size = executor.chunk_size
    elif executor.kind in ("slurm_cluster", "slurm_job"):
        size = 1
    else:
        size = max(1, math.ceil(n / (4 * executor.workers)))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _external_executor(executor: Executor) -> _FuturesExecutor:
    import executorlib

    if executor.kind == "single_node":
        return executorlib.SingleNodeExecutor(max_workers=executor.workers,
                                              block_allocation=True)
    if executor.kind == "slurm_cluster":
        return executorlib.SlurmClusterExecutor(cache_directory=executor.cache_directory,
                                                resource_dict=executor.resource_dict())
    return executorlib.SlurmJobExecutor(max_workers=executor.workers,
                                        resource_dict=executor.resource_dict())


def run_tasks(func: Callable[[Any], Any], items: Sequence[Any], executor: Executor,
              desc: str = "") -> list[Any]:
    """Apply a module-level ``func`` to every item; results in input order.

    ``func`` should catch its own per-item errors and return them as data. If a worker dies
    or a submission fails anyway, the affected items' results are :class:`TaskError` instances,
    so one broken task never loses the others.
    """
    items = list(items)
    if not items:
        return []
    bar = tqdm(total=len(items), desc=desc, disable=None, leave=False)
    try:
        if executor.kind == "serial" or (executor.kind == "process" and len(items) == 1):
            results = []
            for item in items:
                results.append(func(item))
                bar.update()
            return results
        return _run_parallel(func, items, executor, bar)
    finally:
        bar.close()


def _run_parallel(func: Callable[[Any], Any], items: list[Any], executor: Executor,
                  bar: tqdm) -> list[Any]:
    chunks = _chunks(len(items), executor)
    if executor.kind == "process":
        pool: _FuturesExecutor = _process_pool(min(executor.workers, len(chunks)))
        owned = False
    else:
        pool, owned = _external_executor(executor), True
    results: list[Any] = [None] * len(items)
    try:
        futures: list[tuple[range, Future]] = [
            (chunk, pool.submit(_run_chunk, func, [items[i] for i in chunk])) for chunk in chunks
        ]
        for chunk, future in futures:
            try:
                values = future.result()
            except Exception as error:  # a worker died or the submission failed
                values = [TaskError(f"{type(error).__name__}: {error}")] * len(chunk)
                if executor.kind == "process":
                    _POOLS.pop(getattr(pool, "_max_workers", -1), None)
            for i, value in zip(chunk, values):
                results[i] = value
            bar.update(len(chunk))
    finally:
        if owned:
            pool.shutdown(wait=True)
    return results
