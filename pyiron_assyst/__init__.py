"""pyiron_assyst: ASSYST training sets for machine-learning interatomic potentials.

The package is layered; each layer imports only from the layers above it in this list:

``core``
    configs (frozen, hashable, JSON), lineage, the ``Atoms.info`` key table, stage reports
``numerics``
    periodic distances, the default optimizer, the cell filter of relaxations
``execution``
    executors (serial, local processes, executorlib, SLURM), killable workers, the resume cache
``calculators``
    calculator configs, per-structure settings (k-points), safe single points
``storage``
    projects on disk (columnar HDF5)
``stages``
    the pipeline in order: ``sample``, ``relax``, ``perturb`` (configs in ``perturbations``),
    ``filters``, ``label``, ``curate``
``fitting``, ``export``, ``figures``
    MACE fit and transferability report, the formats fitting codes read, pictures
``workflow``
    pyiron_workflow nodes, the canonical macro, cost planning
``cli``
    the ``pyiron-assyst`` command and its TOML settings

Importing this package does not import pyiron_workflow.
"""

from pyiron_assyst import _moved

__version__ = "0.1.0"

_moved.install()
