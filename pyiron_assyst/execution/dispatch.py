"""Fan-out through a result cache: compute only what is not on disk yet, keep results at once.

:func:`run_cached` is :func:`~pyiron_assyst.execution.executors.run_tasks` with a
:class:`~pyiron_assyst.execution.cache.ResultCache` in front: tasks whose key has an entry are
answered
from it, the others run on the executor, and every result is stored the moment its task
finishes (as completed, not in input order), so a run killed with SIGKILL loses only the tasks
that were running. Failed tasks are stored as failures and are answered from the cache as
failures (not retried) unless ``retry_failed`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.execution.codec import CodecError
from pyiron_assyst.execution.executors import Executor, iter_tasks, run_tasks
from pyiron_assyst.execution.tasks import TaskError

__all__ = ["CacheStats", "failure_reason", "run_cached"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheStats:
    """What :func:`run_cached` did.

    Parameters
    ----------
    hits
        Tasks answered from the cache with a finished result.
    failed_hits
        Tasks answered from the cache with a stored failure (not retried).
    computed
        Tasks that ran.
    not_stored
        Results that could not be encoded and were not cached (a warning names the first).
    """

    hits: int = 0
    failed_hits: int = 0
    computed: int = 0
    not_stored: int = 0


def failure_reason(result: Any) -> str:
    """``""`` if ``result`` is a finished task result, else its failure reason.

    A :class:`~pyiron_assyst.execution.tasks.TaskError` (raised, timed out, worker died) and any
    value with ``ok == False`` and a ``reason`` (e.g.
    :class:`~pyiron_assyst.calculators.evaluation.Outcome`)
    are failures.
    """
    if isinstance(result, TaskError):
        return result.reason or "calculator_error"
    if getattr(result, "ok", True) is False:
        return str(getattr(result, "reason", "")) or "failed"
    return ""


def run_cached(func: Callable[[Any], Any], items: Sequence[Any], keys: Sequence[str],
               executor: Executor, cache: ResultCache | None, retry_failed: bool = False,
               desc: str = "") -> tuple[list[Any], CacheStats]:
    """Apply ``func`` to every item, answering from ``cache`` where it can; input order.

    Parameters
    ----------
    func
        Module-level task function (as for :func:`~pyiron_assyst.execution.executors.run_tasks`).
    items
        Task inputs.
    keys
        Content key of each item (e.g. :func:`~pyiron_assyst.execution.cache.structure_key`): equal
        keys must mean equal results.
    executor
        Where the tasks that are not cached run.
    cache
        The cache (a namespace of one stage); ``None`` runs everything uncached.
    retry_failed
        Run tasks again whose stored entry is a failure.
    desc
        Progress-bar label, recorded in the batch manifest.

    Returns
    -------
    results
        One per item, in input order: what ``func`` returned (or the
        :class:`~pyiron_assyst.execution.tasks.TaskError`), or the decoded cached value.
    stats
        Hits, failed hits, computed and not stored counts.
    """
    if len(keys) != len(items):
        raise ValueError(f"run_cached: {len(keys)} keys for {len(items)} items")
    if cache is None:
        return run_tasks(func, items, executor, desc), CacheStats(computed=len(items))
    cache.write_manifest(keys, desc)
    results: list[Any] = [None] * len(items)
    todo: list[int] = []
    hits = failed_hits = 0
    for i, key in enumerate(keys):
        entry = cache.get(key)
        if entry is None or (entry.failed and retry_failed):
            todo.append(i)
        else:
            results[i] = entry.value
            hits += not entry.failed
            failed_hits += entry.failed
    not_stored = 0
    for j, result in iter_tasks(func, [items[i] for i in todo], executor, desc):
        results[todo[j]] = result
        not_stored += not _store(cache, keys[todo[j]], result, first=not not_stored)
    stats = CacheStats(hits, failed_hits, len(todo), not_stored)
    logger.info("%s: %d from the cache (%d failures not retried), %d computed", desc or "tasks",
                hits + failed_hits, failed_hits, len(todo))
    return results, stats


def _store(cache: ResultCache, key: str, result: Any, first: bool) -> bool:
    reason = failure_reason(result)
    try:
        cache.put(key, result, failed=bool(reason), reason=reason)
    except CodecError as error:
        if first:
            logger.warning("a result is not cached (it cannot be encoded): %s", error)
        return False
    return True
