"""Sub-commands of the ``pyiron-assyst`` command line, one module each (``add_*_command``)."""
