"""The ``pyiron-assyst`` command line: one module per command, the TOML settings, the shared
pipeline driver (``_pipeline``). The entry point is :func:`pyiron_assyst.cli.main.main`."""
