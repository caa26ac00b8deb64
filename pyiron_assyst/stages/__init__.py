"""The ASSYST stages, each a plain function ``(structures, configs) -> (structures, StageReport)``.

In pipeline order:

1. :mod:`~pyiron_assyst.stages.sample` -- random symmetric crystals over formulas x space groups
2. :mod:`~pyiron_assyst.stages.relax` -- volume, cell, symmetry-constrained or full relaxation
3. :mod:`~pyiron_assyst.stages.perturb` -- rattled and strained copies (configs in
   :mod:`~pyiron_assyst.stages.perturbations`)
4. :mod:`~pyiron_assyst.stages.filters` -- drop pathological structures
5. :mod:`~pyiron_assyst.stages.short_range` -- isolated atoms, dimers, trimers and compressed
   crystals, added after the filter (what a potential needs below its distance)
6. :mod:`~pyiron_assyst.stages.label` -- reference single points (DFT in production)
7. :mod:`~pyiron_assyst.stages.curate` -- caps, duplicates, isolated-atom reference energies
"""
