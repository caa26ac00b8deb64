"""Dispatch as data: where the per-structure work of an expensive stage runs.

An :class:`Executor` is a frozen description (kind and resources); :func:`run_tasks` fans a
module-level function out over items with it and returns the results in input order. Local
process pools are persistent and shared between stages (workers are spawned once, since each
pays the import of ase and numpy), and tasks are sent in chunks so that a 0.1-s EMT relaxation
does not pay a round trip each.

On SLURM, ``"slurm_cluster"`` submits one ``sbatch`` job per chunk (default: one task per job)
through executorlib's ``SlurmClusterExecutor``. The job script comes from
:meth:`Executor.submission_template`: it reserves ``cores`` tasks × ``threads_per_core`` CPUs
(and ``gpus_per_core`` GPUs per task) for the task, whose Python function runs *once* and may
start an MPI code on the reserved cores (e.g. ``srun -n $SLURM_NTASKS dft.x``). Results are
cached by content (function and items) in ``cache_directory``: a driver that is killed and
started again picks finished jobs up from the cache and waits for running ones instead of
resubmitting them. ``"slurm_job"`` runs persistent workers as ``srun`` steps inside the current
allocation (``salloc``/``sbatch``) through executorlib's ``SlurmJobExecutor``.

A function that raises on one item gives a :class:`TaskError` for that item only, on every kind;
chunks with such errors (or whose job failed) are not kept in the cache, so a re-run retries them.

``task_timeout`` limits the time of each task. Local ``"process"`` workers
(:class:`~pyiron_assyst.execution.process_pool.WorkerPool`) are killed with everything they started
when
a task overruns, and replaced; a worker that dies fails only the task it was running. On the
other kinds a ``SIGALRM`` in the worker process interrupts the task (Python code and calls that
return to the interpreter; a hang inside C code that never does is only stopped by the job's
``run_time_max`` on SLURM). A timed-out task is a :class:`TaskError` with ``reason ==
"timeout"``. :func:`iter_tasks` yields results as tasks finish, for callers that keep them
(e.g. a result cache) before the stage is over.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import os
import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, as_completed
from concurrent.futures import Executor as _FuturesExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from tqdm.auto import tqdm

from pyiron_assyst.core.config import Config, require
from pyiron_assyst.execution.process_pool import WorkerPool
from pyiron_assyst.execution.tasks import TaskError, call, can_alarm, run_chunk

__all__ = ["KINDS", "SCHEDULER_KINDS", "Executor", "iter_tasks",
           "run_tasks", "shutdown_pools"]

logger = logging.getLogger(__name__)

KINDS = ("serial", "process", "single_node", "slurm_cluster", "slurm_job")
SCHEDULER_KINDS = ("slurm_cluster", "slurm_job")

ExecutorKind = Literal["serial", "process", "single_node", "slurm_cluster", "slurm_job"]

_PARTITION = re.compile(r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*")
_TEMPLATE_SYNTAX = ("{{", "{%", "{#", "\n", "\r")
_DEFAULT_CACHE = "executorlib_cache"


@dataclass(frozen=True)
class Executor(Config):
    """Where and with what resources a stage runs its per-structure tasks.

    Parameters
    ----------
    kind
        ``"serial"`` (in this process, BLAS/OpenMP limited to ``cores * threads_per_core``
        threads while its tasks run), ``"process"`` (persistent local worker processes),
        ``"single_node"`` (executorlib ``SingleNodeExecutor``), ``"slurm_cluster"`` (executorlib
        ``SlurmClusterExecutor``: one ``sbatch`` job per chunk) or ``"slurm_job"`` (executorlib
        ``SlurmJobExecutor``: persistent ``srun`` workers inside the current allocation).
    max_workers
        Parallel workers; ``0`` means all cores of this machine, or for ``"slurm_job"`` all CPUs
        of the allocation divided by ``cores * threads_per_core``.
    cores
        Cores (SLURM tasks) reserved per task, e.g. for the MPI ranks of a DFT code; the Python
        function itself runs once. Used by the SLURM kinds.
    threads_per_core
        CPUs per reserved core (``--cpus-per-task``, e.g. OpenMP threads).
    gpus_per_core
        GPUs per reserved core (``--gpus-per-task``).
    run_time_max
        Wall-time limit of each ``"slurm_cluster"`` job in s (``None``: the partition default).
    partition
        SLURM partition(s), comma-separated (``None``: the cluster's default partition).
    scheduler_args
        Extra SLURM options, each one string starting with ``-``, e.g. ``("--exclusive",)``:
        ``#SBATCH`` lines for ``"slurm_cluster"``, ``srun`` options for ``"slurm_job"``.
    chunk_size
        Tasks per submission; ``0`` chooses about four chunks per worker locally and one task
        per job on a scheduler.
    cache_directory
        Where ``"slurm_cluster"`` keeps its job files, scripts, logs and cached results
        (``None``: ``./executorlib_cache``). No whitespace (a SLURM restriction).
    task_timeout
        Time limit of each task (one structure) in s; a task that overruns fails with reason
        ``"timeout"`` and the others go on (``None``: no limit). Enforced by killing and
        replacing the worker on ``"process"``, by ``SIGALRM`` in the worker elsewhere, and on
        ``"serial"`` only when called from the main thread (a warning says when it cannot be).
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
    task_timeout: float | None = None

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
        require(self.task_timeout is None or (
            isinstance(self.task_timeout, (int, float)) and not isinstance(self.task_timeout, bool)
            and math.isfinite(self.task_timeout) and self.task_timeout > 0), "Executor",
            "task_timeout", "None or a finite number > 0 s", self.task_timeout)
        if self.task_timeout is not None:
            object.__setattr__(self, "task_timeout", float(self.task_timeout))
        object.__setattr__(self, "scheduler_args", tuple(self.scheduler_args))
        self._check_scheduler_fields()

    def _check_scheduler_fields(self) -> None:
        require(self.partition is None or bool(_PARTITION.fullmatch(self.partition)),
                "Executor", "partition", "None or comma-separated partition names", self.partition)
        for arg in self.scheduler_args:
            require(isinstance(arg, str) and arg.startswith("-")
                    and not any(s in arg for s in _TEMPLATE_SYNTAX), "Executor",
                    "scheduler_args", "one-line options starting with '-' (no '{{', '{%')", arg)
        require(self.cache_directory is None or (
            bool(self.cache_directory) and not any(c.isspace() for c in self.cache_directory)),
            "Executor", "cache_directory", "None or a path without whitespace",
            self.cache_directory)

    @property
    def workers(self) -> int:
        """Number of parallel workers."""
        if self.kind == "serial":
            return 1
        if self.max_workers:
            return self.max_workers
        if self.kind == "slurm_job":
            return max(1, _allocation_cpus() // (self.cores * self.threads_per_core))
        return os.cpu_count() or 1

    def resource_dict(self) -> dict[str, Any]:
        """executorlib ``resource_dict`` of one task (as executorlib documents the keys)."""
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

    def submission_template(self) -> str:
        """The ``sbatch`` job script of a ``"slurm_cluster"`` task (a jinja2 template).

        Everything this executor requests is written literally; ``job_name``,
        ``working_directory``, ``dependency_list`` and ``command`` are filled in per job.
        Without a ``partition`` no ``--partition`` line is written (the default partition).
        """
        lines = ["#!/bin/bash", "#SBATCH --job-name={{job_name}}",
                 "#SBATCH --chdir={{working_directory}}", "#SBATCH --output=slurm-%j.out",
                 f"#SBATCH --ntasks={self.cores}",
                 f"#SBATCH --cpus-per-task={self.threads_per_core}"]
        if self.partition:
            lines.append(f"#SBATCH --partition={self.partition}")
        if self.gpus_per_core:
            lines.append(f"#SBATCH --gpus-per-task={self.gpus_per_core}")
        if self.run_time_max is not None:
            lines.append(f"#SBATCH --time={_slurm_time(self.run_time_max)}")
        lines += [f"#SBATCH {arg}" for arg in self.scheduler_args]
        lines.append("{%- if dependency_list %}\n#SBATCH --dependency=afterok:"
                     "{{ dependency_list | join(',') }}\n{%- endif %}")
        return "\n".join(lines) + "\n\n{{command}}\n\n"  # jinja drops one final newline


def _slurm_time(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}:00"


def _allocation_cpus() -> int:
    """CPUs of the current SLURM allocation (this machine's cores outside one)."""
    env = os.environ
    if "SLURM_NTASKS" in env:
        return int(env["SLURM_NTASKS"]) * int(env.get("SLURM_CPUS_PER_TASK", "1"))
    total = 0
    for part in env.get("SLURM_JOB_CPUS_PER_NODE", "").split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part)
        if match:
            total += int(match[1]) * int(match[2] or 1)
    return total or os.cpu_count() or 1


_POOLS: dict[int, WorkerPool] = {}
_PRIVATE: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
"""Pools made for a caller while the shared one was busy (stopped by :func:`shutdown_pools`)."""


def _blas_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


@contextmanager
def _thread_limit(threads: int) -> Iterator[None]:
    """BLAS / OpenMP thread pools of this process limited to ``threads`` while tasks run here.

    A serial (or single in-process) run is one core's work: left at their default (all cores),
    OpenBLAS's threads spin against each other on tiny matrices, which made an EMT relaxation on
    a workflow node's thread 3-6x slower than on the main thread. Process workers get the same
    treatment once at start-up (``cores // workers`` threads each).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # declared dependency; without it nothing is limited
        yield
        return
    import numpy  # noqa: F401 - load the BLAS libraries the tasks will use, so they are limited
    import scipy.linalg  # noqa: F401

    with threadpool_limits(limits=threads):
        yield


def _process_pool(workers: int) -> tuple[WorkerPool, bool]:
    """The shared pool of ``workers`` processes, or a private one if it is busy (another
    thread is using it); the flag says whether the caller owns (and must shut down) it."""
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = WorkerPool(workers, _blas_threads(workers))
    if pool.lock.locked():
        private = WorkerPool(workers, _blas_threads(workers))
        _PRIVATE.add(private)
        return private, True
    return pool, False


@atexit.register
def shutdown_pools() -> None:
    """Stop the local worker processes (at exit, or after Ctrl-C). Stages running on other
    threads end with :class:`~pyiron_assyst.execution.process_pool.WorkInterrupted`; their
    unfinished structures get no result, so they are not cached as failures."""
    for pool in [*_POOLS.values(), *_PRIVATE]:
        pool.shutdown()
    _POOLS.clear()


def _chunks(n: int, executor: Executor) -> list[range]:
    if executor.chunk_size:
        size = executor.chunk_size
    elif executor.kind in SCHEDULER_KINDS:
        size = 1
    else:
        size = max(1, math.ceil(n / (4 * executor.workers)))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _cache_directory(executor: Executor) -> str:
    return os.path.abspath(executor.cache_directory or _DEFAULT_CACHE)


def _cache_key(func: Callable[[Any], Any], items: Sequence[Any]) -> str:
    """Content key of one chunk: the function (by reference if importable) and its items."""
    import cloudpickle

    digest = hashlib.sha256(cloudpickle.dumps((func, list(items)))).hexdigest()[:32]
    return f"{getattr(func, '__name__', 'task')}_{digest}"


def _external_executor(executor: Executor) -> _FuturesExecutor:
    import executorlib

    if executor.kind == "single_node":
        return executorlib.SingleNodeExecutor(max_workers=executor.workers,
                                              block_allocation=True)
    if executor.kind == "slurm_cluster":
        return _slurm_cluster_executor(executor)
    return _slurm_job_executor(executor)


def _slurm_cluster_executor(executor: Executor) -> _FuturesExecutor:
    try:
        import h5py  # noqa: F401
        import pysqa  # noqa: F401
    except ImportError as error:
        raise ImportError("Executor(kind='slurm_cluster') needs executorlib's 'cluster' extra: "
                          f"pip install 'executorlib[cluster]>=1.9.2,<1.11' ({error})") from error
    from executorlib import SlurmClusterExecutor

    # the python task runs once (cores=1 for executorlib); the job script reserves the rest
    return SlurmClusterExecutor(
        cache_directory=_cache_directory(executor),
        resource_dict={"cores": 1, "threads_per_core": 1,
                       "submission_template": executor.submission_template()})


def _slurm_job_executor(executor: Executor) -> _FuturesExecutor:
    from executorlib import SlurmJobExecutor

    # one srun step (one task) per persistent worker; an explicit --gpus keeps a step from
    # inheriting the allocation's GPU request (SLURM_GPUS), which would serialise the workers
    gpus = executor.gpus_per_core * executor.cores
    resources: dict[str, Any] = {
        "cores": 1, "threads_per_core": executor.cores * executor.threads_per_core,
        "slurm_cmd_args": [f"--gpus={gpus}", *executor.scheduler_args]}
    if gpus:
        resources["gpus_per_core"] = gpus
    return SlurmJobExecutor(max_workers=executor.workers, block_allocation=True,
                            resource_dict=resources)


def run_tasks(func: Callable[[Any], Any], items: Sequence[Any], executor: Executor,
              desc: str = "") -> list[Any]:
    """Apply a module-level ``func`` to every item; results in input order.

    ``func`` should catch its own per-item errors and return them as data. If it raises
    anyway, or overruns ``executor.task_timeout``, or its worker dies, or its job cannot run,
    the affected items' results are :class:`TaskError` instances, so one broken task never
    loses the others. A progress bar counts finished tasks.
    """
    items = list(items)
    results: list[Any] = [None] * len(items)
    for index, result in iter_tasks(func, items, executor, desc):
        results[index] = result
    return results


def iter_tasks(func: Callable[[Any], Any], items: Sequence[Any], executor: Executor,
               desc: str = "") -> Iterator[tuple[int, Any]]:
    """Like :func:`run_tasks`, but yield ``(index, result)`` as soon as each task finishes.

    Every index of ``items`` is yielded exactly once (results of a remote chunk arrive
    together). Closing the iterator early stops the local workers that are still busy.
    """
    items = list(items)
    if not items:
        return
    bar = tqdm(total=len(items), desc=desc, disable=None, leave=False)
    try:
        for index, result in _iter(func, items, executor):
            bar.update()
            yield index, result
    finally:
        bar.close()


def _iter(func: Callable[[Any], Any], items: list[Any], executor: Executor
          ) -> Iterator[tuple[int, Any]]:
    timeout = executor.task_timeout
    local = executor.kind == "serial" or (
        executor.kind == "process" and len(items) == 1 and timeout is None)
    if local:
        if timeout is not None and not can_alarm():
            logger.warning("task_timeout=%g s is not enforced: kind='serial' runs tasks on this "
                           "thread, which is not the main thread; use kind='process'", timeout)
        with _thread_limit(executor.cores * executor.threads_per_core):
            for index, item in enumerate(items):
                yield index, call(func, item, timeout)
    elif executor.kind == "process":
        chunks = _chunks(len(items), executor)
        pool, owned = _process_pool(min(executor.workers, len(chunks)))
        try:
            yield from pool.run(func, items, chunks, timeout)
        finally:
            if owned:
                pool.shutdown()
    else:
        yield from _iter_external(func, items, executor)


def _submit(pool: _FuturesExecutor, func: Callable[[Any], Any], chunk: list[Any],
            executor: Executor) -> Future:
    if executor.kind == "slurm_cluster":
        return pool.submit(run_chunk, func, chunk, executor.task_timeout,
                           resource_dict={"cache_key": _cache_key(func, chunk)})
    return pool.submit(run_chunk, func, chunk, executor.task_timeout)


def _iter_external(func: Callable[[Any], Any], items: list[Any], executor: Executor
                   ) -> Iterator[tuple[int, Any]]:
    chunks = _chunks(len(items), executor)
    pool = _external_executor(executor)
    try:
        futures = {_submit(pool, func, [items[i] for i in chunk], executor): chunk
                   for chunk in chunks}
        for future in as_completed(futures):
            chunk = futures[future]
            values = _chunk_values(future, len(chunk))
            if executor.kind == "slurm_cluster" and any(isinstance(v, TaskError) for v in values):
                _forget(executor, func, [items[i] for i in chunk])
            yield from zip(chunk, values)
    except BaseException:  # leave submitted SLURM jobs running: a re-run picks them up
        pool.shutdown(wait=False)
        raise
    pool.shutdown(wait=True)


def _chunk_values(future: Future, size: int) -> list[Any]:
    try:
        return future.result()
    except CancelledError:  # the executor was shut down (interrupt): not the tasks' fault
        return [TaskError("CancelledError: interrupted", reason="interrupted")] * size
    except Exception as error:  # a worker died or the submission / job failed
        output = getattr(error, "output", None)  # e.g. what sbatch said when it refused a job
        detail = f" ({output.strip()})" if isinstance(output, str) and output.strip() else ""
        return [TaskError(f"{type(error).__name__}: {error}{detail}")] * size


def _forget(executor: Executor, func: Callable[[Any], Any], chunk: list[Any]) -> None:
    """Drop a failed chunk's cached result so that running again retries it."""
    path = os.path.join(_cache_directory(executor), _cache_key(func, chunk) + "_o.h5")
    if os.path.exists(path):
        os.remove(path)
