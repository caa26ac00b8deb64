"""Shared test set-up: the test package may be imported by JSON configs (faulty calculators)."""

from pyiron_assyst.core.config import register_import_prefix

register_import_prefix("tests")
