"""Looking at processes from the outside, as a user's `ps` would."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["alive", "descendants_running", "kill_when"]


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def descendants_running(ancestor: int, marker: bytes) -> list[int]:
    """Pids of live processes whose command line contains ``marker`` and that descend from
    ``ancestor``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker not in (proc / "cmdline").read_bytes() or not alive(int(proc.name)):
                continue
            pid = int(proc.name)
            while pid > 1 and pid != ancestor:
                pid = _parent(pid)
        except (OSError, ValueError, IndexError):
            continue
        if pid == ancestor:
            found.append(int(proc.name))
    return found


def kill_when(child: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300.0) -> None:
    """SIGKILL ``child`` as soon as ``ready()`` holds (polled every 20 ms); fail if it does not
    within ``timeout`` s or the child ends first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready() and child.poll() is None:
            assert time.monotonic() < deadline, "the condition never held"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    stderr = child.stderr.read().decode() if child.stderr else ""
    assert child.returncode == -signal.SIGKILL, stderr
