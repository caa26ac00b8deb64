"""pyiron_assyst: ASSYST training sets for machine-learning interatomic potentials.

Stages (plain functions, each returning ``(structures, StageReport)``) live in
:mod:`~pyiron_assyst.crystals`, :mod:`~pyiron_assyst.relaxations`,
:mod:`~pyiron_assyst.perturbations` and :mod:`~pyiron_assyst.filters`; their pyiron_workflow
nodes in :mod:`~pyiron_assyst.nodes` and the canonical macro in :mod:`~pyiron_assyst.workflows`.
Importing this package does not import pyiron_workflow.
"""

__version__ = "0.1.0"
