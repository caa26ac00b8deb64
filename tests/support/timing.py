"""Time limits for tests on a shared, loaded host.

A limit that proves "a hang is cut off" or "this does not wait for abandoned work" proves the
same when it is longer, so every such limit goes through :func:`slack`: the nominal seconds
times a factor that grows with the load of the machine when the tests start (at least 3; set
``PYIRON_ASSYST_TIME_SCALE`` to force one).
"""

from __future__ import annotations

import os

__all__ = ["SCALE", "slack"]


def _scale() -> float:
    forced = os.environ.get("PYIRON_ASSYST_TIME_SCALE")
    if forced:
        return float(forced)
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return 3.0 * max(1.0, load)


SCALE = _scale()
"""Factor applied to every nominal time limit of the tests."""


def slack(seconds: float) -> float:
    """``seconds`` scaled for this host's load (see :data:`SCALE`)."""
    return round(seconds * SCALE, 1)
