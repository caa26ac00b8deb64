"""``python -m pyiron_assyst.cli``: the ``pyiron-assyst`` command."""

import sys

from pyiron_assyst.cli.main import main

sys.exit(main())
