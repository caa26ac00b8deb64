"""One task of a stage: run it, turn its exception or overrun into a :class:`TaskError`.

Shared by every executor kind and by the worker processes of
:mod:`~pyiron_assyst.execution.process_pool`; it imports nothing of the package.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["TaskError", "TaskTimeout", "call", "can_alarm", "run_chunk"]


class TaskError(RuntimeError):
    """A task failed: its function raised, it overran its time limit, its worker died or its
    job could not run.

    ``str(error)`` is ``"ExceptionType: message"``; :attr:`traceback` holds the formatted
    traceback from the worker when there was one; :attr:`reason` is the drop reason a stage
    records: ``"timeout"`` for an overrun, else ``"calculator_error"``.
    """

    def __init__(self, message: str, traceback: str = "", reason: str = "calculator_error"
                 ) -> None:
        super().__init__(message)
        self.traceback = traceback
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.traceback, self.reason))


class TaskTimeout(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an Exception
    """Raised inside a task by the time-limit alarm; a ``BaseException`` so that the task's
    own ``except Exception`` (which turns calculator errors into data) does not swallow it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise TaskTimeout


def can_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def call(func: Callable[[Any], Any], item: Any, timeout: float | None = None) -> Any:
    """``func(item)``, or a :class:`TaskError` carrying the exception and its traceback.

    With ``timeout`` (s) and on the main thread, a ``SIGALRM`` interrupts ``func`` when it
    overruns; the result is then a :class:`TaskError` with reason ``"timeout"``.
    """
    alarm = timeout is not None and can_alarm()
    previous = signal.signal(signal.SIGALRM, _on_alarm) if alarm else None
    try:
        try:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, timeout)
            return func(item)
        finally:  # no alarm can fire after this
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except TaskTimeout:
        return TaskError(f"TaskTimeout: no result within {timeout:g} s", reason="timeout")
    except Exception as error:
        return TaskError(f"{type(error).__name__}: {error}", traceback.format_exc())
    finally:
        if alarm:
            signal.signal(signal.SIGALRM, previous)


def run_chunk(func: Callable[[Any], Any], items: Sequence[Any],
               timeout: float | None = None) -> list[Any]:
    return [call(func, item, timeout) for item in items]
