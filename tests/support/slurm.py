"""The session fixture ``slurm``: a running one-node SLURM cluster on localhost.

Import it into a test module with ``from tests.support.slurm import slurm  # noqa: F401``.
It runs ``scripts/slurm/start.sh`` once per session and, if the cluster was started here, stops
it with ``scripts/slurm/stop.sh`` at the end. Where SLURM cannot be installed or started (not
root, no apt-get, no network) the tests that use it skip with the reason start.sh gives; with
``PYIRON_ASSYST_REQUIRE_SLURM=1`` (CI) they fail instead. Jobs run in fresh interpreters that
import test modules by name, so the repository root is put on ``PYTHONPATH``, and
``SLURM_CONF`` names the cluster's configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["REPO", "SCRIPTS", "slurm"]

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "slurm"
SKIP_CODES = {3: "not root", 4: "no apt-get", 5: "package installation failed"}


@pytest.fixture(scope="session")
def slurm() -> Iterator[str]:
    """A running local SLURM cluster (started here, stopped at the end if started here).

    Yields the state directory of the cluster.
    """
    if shutil.which("bash") is None:
        pytest.skip("no bash to run scripts/slurm/start.sh")
    state = os.environ.get("SLURM_STATE_DIR", "/tmp/pyiron_assyst_slurm")
    proc = subprocess.run(["bash", str(SCRIPTS / "start.sh")], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode in SKIP_CODES:
        reason = f"local SLURM unavailable ({SKIP_CODES[proc.returncode]}): {proc.stderr.strip()}"
        if os.environ.get("PYIRON_ASSYST_REQUIRE_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert proc.returncode == 0, f"scripts/slurm/start.sh failed: {proc.stderr}"
    started_here = "already running" not in proc.stderr
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", os.path.join(state, "slurm.conf"))
        patch.setenv("PYTHONPATH", path)  # jobs import test modules by name
        yield state
    if started_here:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh")], capture_output=True, timeout=120)
