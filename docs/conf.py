"""Sphinx configuration of the pyiron_assyst docs.

Build (warnings are errors, as in CI)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

API pages are generated into ``api/generated/`` at every build from each public module's
``__all__`` (see ``_ext/assyst_docs.py``); the ``Atoms.info`` key table is rendered from
:func:`pyiron_assyst.core.info_keys.info_table`. Pages about modules that do not import are left
out.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # the package itself, also when it is not installed

from assyst_docs import excluded_pages  # noqa: E402

import pyiron_assyst  # noqa: E402

project = "pyiron_assyst"
author = "pyiron_assyst developers"
copyright = "pyiron_assyst developers"  # noqa: A001
release = version = pyiron_assyst.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "assyst_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# Pages of stages whose module is written later (or needs an optional dependency): left out
# (with their toctree entries) when a module they document does not import.
PAGE_MODULES = {
    "stages/05-label.md": ("pyiron_assyst.stages.label",
                           "pyiron_assyst.calculators.structure_settings"),
    "stages/06-curate.md": ("pyiron_assyst.stages.curate",),
    "stages/07-export.md": ("pyiron_assyst.export", "pyiron_assyst.export.potentialfit"),
}
exclude_patterns += excluded_pages(PAGE_MODULES)

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autosummary_generate = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"pyiron_assyst {release}"
html_static_path: list[str] = []
smartquotes = False  # quotes in docstrings and the info-key table are code, not prose
