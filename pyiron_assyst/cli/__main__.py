"""``python -m pyiron_assyst.cli``: the ``pyiron-assyst`` command."""

import sys

from pyiron_assyst.cli import main

sys.exit(main())
