"""Plain Python scripts that use the package: the README's snippets as written, and scripts
with and without the ``if __name__ == "__main__":`` guard, with local worker processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

UNGUARDED = """
from pyiron_assyst.execution.executors import Executor, run_tasks
from tests.support.tasks import square
print(run_tasks(square, [1, 2, 3], Executor(kind="process", max_workers=2, chunk_size=1)))
"""

GUARDED_WITH_LOCAL_TASK = """
from pyiron_assyst.execution.executors import Executor, run_tasks

def cube(x):  # defined in the script: workers must import the script to run it
    return x ** 3

if __name__ == "__main__":
    print(run_tasks(cube, [1, 2, 3], Executor(kind="process", max_workers=2, chunk_size=1)))
"""


def _run_script(tmp_path: Path, name: str, code: str, timeout: float = 600) -> str:
    script = tmp_path / name
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_a_script_without_the_guard_runs_with_worker_processes(tmp_path):
    assert _run_script(tmp_path, "plain.py", UNGUARDED).strip() == "[1, 4, 9]"


def test_a_guarded_script_still_sends_its_own_functions_to_workers(tmp_path):
    assert _run_script(tmp_path, "guarded.py", GUARDED_WITH_LOCAL_TASK).strip() == "[1, 8, 27]"


def _readme_snippets() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_python_snippets_run_as_scripts(tmp_path):
    snippets = _readme_snippets()
    assert len(snippets) >= 2
    # each snippet as its own script, the later ones after the names the earlier ones define
    for n in range(1, len(snippets) + 1):
        _run_script(tmp_path, f"readme_{n}.py", "\n".join(snippets[:n]), timeout=1800)
