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
"""

from __future__ import annotations

import atexit
import hashlib
import math
import os
import re
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Executor as _FuturesExecutor
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Literal

from tqdm.auto import tqdm

from .config import Config, require

__all__ = ["KINDS", "SCHEDULER_KINDS", "Executor", "TaskError", "run_tasks", "shutdown_pools"]

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
        ``"serial"`` (in this process), ``"process"`` (persistent local worker processes),
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


class TaskError(RuntimeError):
    """A task failed: its function raised, its worker died or its job could not run.

    ``str(error)`` is ``"ExceptionType: message"``; :attr:`traceback` holds the formatted
    traceback from the worker when there was one.
    """

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


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


def _call(func: Callable[[Any], Any], item: Any) -> Any:
    """``func(item)``, or a :class:`TaskError` carrying the exception and its traceback."""
    try:
        return func(item)
    except Exception as error:
        return TaskError(f"{type(error).__name__}: {error}", traceback.format_exc())


def _run_chunk(func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [_call(func, item) for item in items]


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
                          f"pip install 'executorlib[cluster]==1.10.3' ({error})") from error
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
    anyway, or its worker dies, or its job cannot run, the affected items' results are
    :class:`TaskError` instances, so one broken task never loses the others. A progress bar
    counts finished tasks.
    """
    items = list(items)
    if not items:
        return []
    bar = tqdm(total=len(items), desc=desc, disable=None, leave=False)
    try:
        if executor.kind == "serial" or (executor.kind == "process" and len(items) == 1):
            results = []
            for item in items:
                results.append(_call(func, item))
                bar.update()
            return results
        return _run_parallel(func, items, executor, bar)
    finally:
        bar.close()


def _submit(pool: _FuturesExecutor, func: Callable[[Any], Any], chunk: list[Any],
            executor: Executor) -> Future:
    if executor.kind == "slurm_cluster":
        return pool.submit(_run_chunk, func, chunk,
                           resource_dict={"cache_key": _cache_key(func, chunk)})
    return pool.submit(_run_chunk, func, chunk)


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
        futures = {_submit(pool, func, [items[i] for i in chunk], executor): chunk
                   for chunk in chunks}
        for future in as_completed(futures):
            chunk = futures[future]
            values = _chunk_values(future, len(chunk), executor, pool)
            if executor.kind == "slurm_cluster" and any(isinstance(v, TaskError) for v in values):
                _forget(executor, func, [items[i] for i in chunk])
            for i, value in zip(chunk, values):
                results[i] = value
            bar.update(len(chunk))
    except BaseException:
        if owned:  # leave submitted SLURM jobs running: a re-run picks them up from the cache
            pool.shutdown(wait=False)
        raise
    if owned:
        pool.shutdown(wait=True)
    return results


def _chunk_values(future: Future, size: int, executor: Executor,
                  pool: _FuturesExecutor) -> list[Any]:
    try:
        return future.result()
    except Exception as error:  # a worker died or the submission / job failed
        if executor.kind == "process":
            _POOLS.pop(getattr(pool, "_max_workers", -1), None)
        output = getattr(error, "output", None)  # e.g. what sbatch said when it refused a job
        detail = f" ({output.strip()})" if isinstance(output, str) and output.strip() else ""
        return [TaskError(f"{type(error).__name__}: {error}{detail}")] * size


def _forget(executor: Executor, func: Callable[[Any], Any], chunk: list[Any]) -> None:
    """Drop a failed chunk's cached result so that running again retries it."""
    path = os.path.join(_cache_directory(executor), _cache_key(func, chunk) + "_o.h5")
    if os.path.exists(path):
        os.remove(path)
