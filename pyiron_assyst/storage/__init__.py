"""Persistence of pipeline runs: columnar structure sets in HDF5, in a project directory.

- :mod:`.columnar` — ``list[Atoms]`` <-> dict of numpy arrays (bit-identical, labels included)
- :mod:`.files` — atomic writes of the files users read; names and paths that stay inside
- :mod:`.hdf5` — those columns in pyiron_base's ``FlattenedStorage`` HDF5 layout; texts;
  atomic writes; clear errors for foreign or corrupt files
- :mod:`.locking` — one writer per project at a time
- :mod:`.tables` — stage tables and lineage walks straight from the columns
- :mod:`.project` — :class:`Project`: save a run, load stages / configs / reports / lineage

Nothing here imports pyiron_base or pyiron_workflow, and nothing is pickled.
"""

from pyiron_assyst.storage.columnar import (
    StorageWarning,
    columns_to_structures,
    structures_to_columns,
)
from pyiron_assyst.storage.errors import StorageError
from pyiron_assyst.storage.project import Project, check_run_name, package_versions, slug

__all__ = [
    "Project",
    "StorageError",
    "StorageWarning",
    "check_run_name",
    "columns_to_structures",
    "package_versions",
    "slug",
    "structures_to_columns",
]
