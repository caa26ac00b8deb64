"""Local worker processes that can be killed and replaced.

:class:`WorkerPool` keeps ``size`` spawned worker processes alive between stages (each pays the
import of ase and numpy once) and runs tasks on them in chunks, yielding every result as soon
as its task finishes. Unlike :class:`concurrent.futures.ProcessPoolExecutor` it enforces a time
limit per task and survives broken workers:

- a task that runs longer than ``timeout`` seconds gets a
  :class:`~pyiron_assyst.execution.tasks.TaskError` with reason ``"timeout"``; its worker is
  killed
  with its whole process group (so that a code it started, e.g. a DFT binary, dies with it)
  and replaced, and the rest of its chunk runs on;
- a worker that dies (segfault, ``os._exit``, out of memory, killed from outside) is replaced
  and its task runs once more on a fresh worker: a lost worker is not the task's fault. If the
  task's worker dies a second time, the task fails with reason ``"crashed"`` (its failure
  kind); the tasks queued behind it run elsewhere.
- :meth:`WorkerPool.shutdown` while tasks run (Ctrl-C, the exit hook) ends the pass with
  :class:`WorkInterrupted`: the tasks it cut off yield no result at all (in particular no
  failure that a result cache would keep), so a resumed run computes them.

Workers leave their process group at start (a Ctrl-C in the terminal reaches the driver only)
and watch their parent: if the driver dies, even by SIGKILL, they kill their group and exit, so
no orphaned calculation keeps running. Each worker limits BLAS / OpenMP threads to
``blas_threads`` (with threadpoolctl when installed, else through the usual environment
variables), so that ``size`` workers do not oversubscribe the cores.
"""

from __future__ import annotations

import ast
import contextlib
import multiprocessing.util  # noqa: F401 - its atexit join runs after our shutdown
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection, get_context
from pathlib import Path
from typing import Any

from pyiron_assyst.execution.tasks import TaskError, call

__all__ = ["WorkInterrupted", "WorkerPool"]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_PARENT_POLL = 0.5
"""Seconds between a worker's checks that its driver is still alive."""
_READY = "ready"
_MAX_FAILED_STARTS = 3
_DEATHS = 2
"""Deaths of a task's worker after which the task counts as failed (the first is retried)."""


class WorkInterrupted(RuntimeError):
    """The pool was shut down (interrupt, exit) while tasks ran; they have no result."""


# ------------------------------------------------------------------- scripts without a guard


def _unguarded_main_line() -> int | None:
    """The line of the running main *script* that started this work, if it is not under
    ``if __name__ == "__main__":`` (``None`` when guarded, or not run from a script file)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path or getattr(main, "__spec__", None) is not None:
        return None
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is main.__dict__
                                     and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return None
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno
    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
                and "__name__" in ast.unparse(node.test)
                and node.lineno <= line <= (node.end_lineno or node.lineno)):
            return None
    return line


@contextlib.contextmanager
def _main_script_hidden_if_unguarded() -> Iterator[None]:
    """Start workers without re-running an unguarded main script in them.

    A spawned worker imports the main script again; without the ``__main__`` guard that import
    would run the user's pipeline a second time and fail. For such a script the workers start
    without it: the pipeline runs as written (objects defined in the script itself then cannot
    be sent to workers -- define them in a module, or guard the script).
    """
    main = sys.modules.get("__main__")
    if main is None or _unguarded_main_line() is None:
        yield
        return
    path = main.__dict__.pop("__file__")
    try:
        yield
    finally:
        main.__file__ = path


# ---------------------------------------------------------------------------- worker side


def _limit_threads(threads: int) -> None:
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_PARENT_POLL)
        if os.getppid() != parent:
            if os.getpgrp() == os.getpid():  # only our own group: what this worker started
                with contextlib.suppress(OSError):
                    os.killpg(0, signal.SIGKILL)
            os._exit(1)


def _error(text: str, trace: str = "") -> Any:
    return TaskError(text, trace)


def _payload(index: int, result: Any) -> bytes:
    try:
        return pickle.dumps((index, result), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # an unpicklable result is that task's failure
        return pickle.dumps((index, _error(f"result cannot be sent back: {error}",
                                           traceback.format_exc())))


def _worker_main(conn: connection.Connection, parent: int, threads: int) -> None:
    """Run chunks ``(indices, pickled (func, items))`` until the driver closes the pipe."""
    with contextlib.suppress(OSError):
        os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _limit_threads(threads)
    conn.send(_READY)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        indices, payload = message
        try:  # a task that cannot be unpickled here (e.g. its module fails to import)
            func, items = pickle.loads(payload)
        except Exception as error:
            text = f"task cannot be loaded in the worker: {type(error).__name__}: {error}"
            for index in indices:
                conn.send_bytes(_payload(index, _error(text, traceback.format_exc())))
            continue
        for index, item in zip(indices, items):
            conn.send_bytes(_payload(index, call(func, item)))


# ---------------------------------------------------------------------------- driver side


@dataclass(eq=False)
class _Worker:
    process: Any
    conn: connection.Connection
    ready: bool = False
    pending: deque[int] = field(default_factory=deque)
    started: float = 0.0
    _closing: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def kill(self) -> None:
        """Kill the worker and every process of its group (what it started).

        Safe to call from several threads at once (a shutdown on Ctrl-C and the pass it
        interrupts): the pipe is closed exactly once, under a lock, so no thread closes a
        file descriptor that another has already closed (and the OS may have reused).
        """
        pid = self.process.pid
        with contextlib.suppress(OSError):
            if self.ready and os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.join(5)
        with self._closing:
            if not self.conn.closed:
                self.conn.close()


class WorkerPool:
    """``size`` persistent, replaceable worker processes (see the module docstring).

    Parameters
    ----------
    size
        Number of worker processes.
    blas_threads
        BLAS / OpenMP threads per worker.
    """

    def __init__(self, size: int, blas_threads: int = 1) -> None:
        self.size = size
        self.blas_threads = blas_threads
        self.lock = threading.Lock()
        self._context = get_context("spawn")
        self._workers: list[_Worker] = []
        self.failed_starts = 0
        self.generation = 0
        """Incremented by :meth:`shutdown`: a pass that started before it is interrupted."""

    def note_failed_start(self, exitcode: int | None) -> None:
        """Count a worker that died before it was ready; give up after a few in a row."""
        self.failed_starts += 1
        if self.failed_starts >= _MAX_FAILED_STARTS:
            self.failed_starts = 0
            raise RuntimeError(f"{_MAX_FAILED_STARTS} worker processes in a row died while "
                               f"starting (last exit code {exitcode})")

    def _spawn(self) -> _Worker:
        driver, worker = self._context.Pipe()
        process = self._context.Process(target=_worker_main, name="assyst-worker",
                                        args=(worker, os.getpid(), self.blas_threads))
        with _main_script_hidden_if_unguarded():
            process.start()
        worker.close()
        return _Worker(process, driver)

    def _fill(self) -> None:
        self._workers = [w for w in self._workers if w.process.is_alive() or w.busy]
        while len(self._workers) < self.size:
            self._workers.append(self._spawn())

    def shutdown(self) -> None:
        """Stop all workers (idle ones politely, busy ones by force); a pass running on another
        thread ends with :class:`WorkInterrupted`."""
        self.generation += 1
        for worker in list(self._workers):
            if worker.busy or not worker.process.is_alive():
                worker.kill()
                continue
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in list(self._workers):
            worker.process.join(2)
            if worker.process.is_alive():
                worker.kill()
        self._workers = []

    def run(self, func: Callable[[Any], Any], items: Sequence[Any],
            chunks: Sequence[Sequence[int]], timeout: float | None = None,
            ) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, func(items[index]))`` as tasks finish, every index exactly once.

        Parameters
        ----------
        func
            Module-level function (it is pickled by reference).
        items
            Task inputs.
        chunks
            Groups of indices sent to a worker together.
        timeout
            Limit in s per task; ``None`` for none.
        """
        with self.lock:
            yield from _Run(self, func, items, chunks, timeout).results()


class _Run:
    """One pass of tasks over a pool: scheduling, deadlines, dead and stuck workers."""

    def __init__(self, pool: WorkerPool, func: Callable[[Any], Any], items: Sequence[Any],
                 chunks: Sequence[Sequence[int]], timeout: float | None) -> None:
        self.pool, self.func, self.items, self.timeout = pool, func, items, timeout
        self.queue: deque[list[int]] = deque(list(c) for c in chunks if len(c))
        self.left = sum(len(c) for c in self.queue)
        self.generation = pool.generation
        self.deaths: dict[int, int] = {}

    def _check(self) -> None:
        if self.pool.generation != self.generation:
            raise WorkInterrupted(f"the worker pool was shut down with {self.left} tasks "
                                  "unfinished (interrupted); they have no result")

    def results(self) -> Iterator[tuple[int, Any]]:
        self.pool._fill()
        try:
            while self.left:
                self._check()
                yield from self._dispatch()
                if self.left:
                    self._check()
                    yield from self._wait()
        except (OSError, ValueError, EOFError):  # pipes closed under us by a shutdown
            self._check()
            raise
        finally:
            for worker in self.pool._workers:  # abandoned mid-way: busy workers are stale
                if worker.busy:
                    worker.kill()
                    worker.pending.clear()

    def _dispatch(self) -> Iterator[tuple[int, Any]]:
        for worker in list(self.pool._workers):
            if not (worker.ready and not worker.busy and self.queue):
                continue
            chunk = self.queue.popleft()
            try:
                payload = pickle.dumps((self.func, [self.items[i] for i in chunk]),
                                       protocol=pickle.HIGHEST_PROTOCOL)
                data = pickle.dumps((chunk, payload), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as error:  # e.g. an item that cannot be pickled
                self.left -= len(chunk)
                for i in chunk:
                    yield i, TaskError(f"task cannot be sent to a worker: {error}")
                continue
            worker.pending.extend(chunk)
            worker.started = time.monotonic()
            try:
                worker.conn.send_bytes(data)
            except OSError:  # the worker died while idle: the chunk never started
                worker.pending.clear()
                self.queue.appendleft(chunk)
                worker.kill()
                self.pool._workers.remove(worker)
                self.pool._fill()

    def _wait_time(self) -> float | None:
        if self.timeout is None:
            return None
        starts = [w.started for w in self.pool._workers if w.busy]
        if not starts:
            return None
        return max(0.0, min(starts) + self.timeout - time.monotonic())

    def _wait(self) -> Iterator[tuple[int, Any]]:
        workers = self.pool._workers
        handles = {}
        for worker in workers:
            handles[worker.conn] = worker
            handles[worker.process.sentinel] = worker
        try:
            ready = connection.wait(list(handles), self._wait_time())
        except (OSError, ValueError):  # a shutdown closed a pipe we were waiting on
            self._check()
            raise
        for worker in dict.fromkeys(handles[h] for h in ready):
            yield from self._read(worker)
        for worker in list(self.pool._workers):
            if worker.busy and self.timeout is not None and (
                    time.monotonic() - worker.started > self.timeout):
                yield from self._replace(worker, "timeout",
                                         f"TaskTimeout: no result within {self.timeout:g} s")

    def _read(self, worker: _Worker) -> Iterator[tuple[int, Any]]:
        while True:
            try:
                if not worker.conn.poll():
                    if worker.process.is_alive():
                        return
                    raise EOFError  # dead, its pipe held open by a process it started
                message = worker.conn.recv()
            except (EOFError, OSError):
                worker.process.join(1)
                self._check()  # killed by a shutdown: no result, in particular no failure
                code = worker.process.exitcode
                if not worker.ready:
                    self.pool.note_failed_start(code)
                yield from self._replace(worker, "crashed",
                                         f"WorkerDied: worker process died (exit code {code}) "
                                         f"{_DEATHS} times on this task", retry=True)
                return
            if message == _READY:
                worker.ready = True
                self.pool.failed_starts = 0
            else:
                index, result = message
                worker.pending.remove(index)
                worker.started = time.monotonic()
                self.left -= 1
                yield index, result

    def _replace(self, worker: _Worker, reason: str, text: str, retry: bool = False
                 ) -> Iterator[tuple[int, Any]]:
        """Replace ``worker``; its running task fails (``retry``: only at its second death),
        the tasks queued behind it go back to the queue."""
        worker.kill()
        if worker in self.pool._workers:  # a worker that died starting may be seen twice
            self.pool._workers.remove(worker)
        if worker.pending:
            index = worker.pending.popleft()
            if worker.pending:
                self.queue.appendleft(list(worker.pending))
            worker.pending.clear()
            self.deaths[index] = self.deaths.get(index, 0) + 1
            if retry and self.deaths[index] < _DEATHS:
                self.queue.appendleft([index])
            else:
                self.left -= 1
                yield index, TaskError(text, reason=reason)
        self.pool._fill()
