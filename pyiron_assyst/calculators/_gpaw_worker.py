"""``python -m pyiron_assyst.calculators._gpaw_worker <dir>``: one GPAW evaluation, all ranks.

Started by :class:`~pyiron_assyst.calculators.gpaw.GpawProcess` under its launcher; see
:func:`~pyiron_assyst.calculators.gpaw.worker_main`.
"""

from __future__ import annotations

import sys

from pyiron_assyst.calculators.gpaw import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
