"""Config nodes whose inputs are the config's fields: what a user types into, field by field.

Each ``@flowrep.atomic`` function here takes the fields of one config class as JSON-able
inputs (numbers, strings, booleans, ``None``, lists and string-keyed dicts) with the class's
own defaults, and returns the frozen config (output port ``config``). Lists become tuples
and dicts sorted pairs on construction, and a bad value raises the config's own
:class:`~pyiron_assyst.core.config.ConfigError` naming the field. In PyironFlow every field
is a text field or a checkbox (a choice among names is a string field, not a ``Literal``:
pyiron_workflow rejects a string constant on a ``Literal`` port); in code
``pwf.node(sample_config, seed=3, spacegroups=[221, 229])`` is the same node. Lists and dicts
are hinted bare ``list`` / ``dict``: PyironFlow 0.1.4 re-checks a list constant against
``list[int]`` strictly when it copies a workflow, and fails.

A config nested in another (the filter of a
:class:`~pyiron_assyst.stages.perturbations.PerturbConfig`, the two parts of an
``&`` of filters, the distance check of a :class:`~pyiron_assyst.stages.curate.CurationConfig`,
the cost model and descriptor of a :class:`~pyiron_assyst.stages.select.SelectConfig`)
is an input typed with
that config class, fed by a child node (``None`` or the class default when unconnected);
the perturbation series, a tree of several kinds, is JSON text.
:func:`form_of` names the form of a config instance; :func:`fields_of` gives the inputs
that reproduce it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from collections.abc import Callable
from typing import Any

import flowrep as fr

from pyiron_assyst import calculators
from pyiron_assyst.calculators import cost
from pyiron_assyst.core.config import Config, config_from_dict
from pyiron_assyst.execution import executors
from pyiron_assyst.stages import (
    curate,
    descriptors,
    filters,
    perturbations,
    relax,
    sample,
    select,
    short_range,
)

__all__ = [
    "FORMS",
    "all_of",
    "aspect_filter",
    "cost_model",
    "curation_config",
    "distance_filter",
    "emt",
    "executor",
    "fields_of",
    "form_of",
    "formulas",
    "full_relax",
    "lennard_jones",
    "morse",
    "perturb_config",
    "power_spectrum",
    "radial_descriptor",
    "sample_config",
    "select_config",
    "short_range_config",
    "volume_filter",
    "volume_relax",
]

_SAMPLE = sample.SampleConfig()
_VOLUME = relax.VolumeRelax()
_FULL = relax.FullRelax()
_EXECUTOR = executors.Executor()
_CURATION = curate.CurationConfig()
_PERTURB = perturbations.PerturbConfig()
_MORSE = calculators.Morse()
_LJ = calculators.LennardJones()
_SHORT = short_range.ShortRangeConfig()
_SELECT = select.SelectConfig()
_COST = cost.CostModel()
_POWER = descriptors.PowerSpectrum()
_RADIAL = descriptors.RadialDescriptor()


@fr.atomic("config")
def formulas(formulas: list) -> sample.Formulas:
    """:class:`~pyiron_assyst.stages.sample.Formulas` from element -> atom count mappings,
    e.g. ``[{"Cu": 1}, {"Cu": 2}]`` (order kept: it names the formula)."""
    return sample.Formulas(formulas)


@fr.atomic("config")
def sample_config(
    spacegroups: list = [],  # noqa: B006 - a JSON constant, never mutated
    dim: int = _SAMPLE.dim,
    tolerance: str = "metallic",
    tolerance_radii: dict = {},  # noqa: B006 - a JSON constant, never mutated
    min_atoms: int = _SAMPLE.min_atoms,
    max_atoms: int = _SAMPLE.max_atoms,
    max_structures: int | None = _SAMPLE.max_structures,
    repeat: int = _SAMPLE.repeat,
    seed: int = _SAMPLE.seed,
    symprec: float = _SAMPLE.symprec,
    vacuum: float = _SAMPLE.vacuum,
    max_retries: int = _SAMPLE.max_retries,
) -> sample.SampleConfig:
    """:class:`~pyiron_assyst.stages.sample.SampleConfig` field by field (``spacegroups``
    empty: all groups of ``dim``; ``tolerance_radii`` given: pyxtal's per-pair tolerances in
    Å instead of the named ``tolerance``; lengths in Å)."""
    return sample.SampleConfig(
        spacegroups=spacegroups or None, dim=dim, tolerance=tolerance_radii or tolerance,
        min_atoms=min_atoms, max_atoms=max_atoms, max_structures=max_structures,
        repeat=repeat, seed=seed,
        symprec=symprec, vacuum=vacuum, max_retries=max_retries)


@fr.atomic("config")
def aspect_filter(maximum_aspect_ratio: float = 6.0) -> filters.Filter:
    """:class:`~pyiron_assyst.stages.filters.AspectFilter`: longest over shortest lattice
    vector at most ``maximum_aspect_ratio``."""
    return filters.AspectFilter(maximum_aspect_ratio)


@fr.atomic("config")
def distance_filter(
    radii: float = 1.0,
    element_radii: dict = {},  # noqa: B006 - a JSON constant, never mutated
) -> filters.Filter:
    """:class:`~pyiron_assyst.stages.filters.DistanceFilter`: no pair closer than the sum of
    the radii in Å (one radius for all; ``element_radii`` given: one per element)."""
    return filters.DistanceFilter(element_radii or radii)


@fr.atomic("config")
def volume_filter(minimum: float = 0.0, maximum: float | None = None) -> filters.Filter:
    """:class:`~pyiron_assyst.stages.filters.VolumeFilter`: volume per atom in Å³ within
    ``[minimum, maximum]`` (``maximum`` ``None``: no upper bound)."""
    return filters.VolumeFilter(minimum, math.inf if maximum is None else maximum)


@fr.atomic("config")
def all_of(first: filters.Filter, second: filters.Filter) -> filters.Filter:
    """``first & second``: structures that pass both filters."""
    return first & second


@fr.atomic("config")
def volume_relax(
    pressure: float = _VOLUME.pressure,
    optimizer: str = _VOLUME.optimizer,
    force_tolerance: float = _VOLUME.force_tolerance,
    max_steps: int = _VOLUME.max_steps,
    keep_unconverged: bool = _VOLUME.keep_unconverged,
    trace: int = _VOLUME.trace,
    calculator: calculators.CalculatorConfig | None = None,
    pre_relax: calculators.CalculatorConfig | None = None,
    pre_relax_steps: int = _VOLUME.pre_relax_steps,
) -> relax.Relaxation:
    """:class:`~pyiron_assyst.stages.relax.VolumeRelax` field by field (pressure in GPa,
    force tolerance in eV/Å; its own calculator and a pre-relaxation's from child nodes)."""
    return relax.VolumeRelax(pressure=pressure, optimizer=optimizer,
                             force_tolerance=force_tolerance, max_steps=max_steps,
                             keep_unconverged=keep_unconverged, trace=trace,
                             calculator=calculator, pre_relax=pre_relax,
                             pre_relax_steps=pre_relax_steps)


@fr.atomic("config")
def full_relax(
    pressure: float = _FULL.pressure,
    optimizer: str = _FULL.optimizer,
    force_tolerance: float = _FULL.force_tolerance,
    max_steps: int = _FULL.max_steps,
    keep_unconverged: bool = _FULL.keep_unconverged,
    trace: int = _FULL.trace,
    calculator: calculators.CalculatorConfig | None = None,
    pre_relax: calculators.CalculatorConfig | None = None,
    pre_relax_steps: int = _FULL.pre_relax_steps,
) -> relax.Relaxation:
    """:class:`~pyiron_assyst.stages.relax.FullRelax` field by field (pressure in GPa, force
    tolerance in eV/Å; its own calculator and a pre-relaxation's from child nodes)."""
    return relax.FullRelax(pressure=pressure, optimizer=optimizer,
                           force_tolerance=force_tolerance, max_steps=max_steps,
                           keep_unconverged=keep_unconverged, trace=trace,
                           calculator=calculator, pre_relax=pre_relax,
                           pre_relax_steps=pre_relax_steps)


@fr.atomic("config")
def perturb_config(
    perturbations_json: str | None = None,
    filter: filters.Filter | None = _PERTURB.filter,  # noqa: A002 - the config's field
    retries: int = _PERTURB.retries,
    seed: int = _PERTURB.seed,
) -> perturbations.PerturbConfig:
    """:class:`~pyiron_assyst.stages.perturbations.PerturbConfig` field by field; the
    perturbation series as JSON text (``None``: the published four rattles and four
    stretches; else a JSON list of perturbation configs), the filter from a filter node."""
    series = (_PERTURB.perturbations if perturbations_json is None
              else tuple(config_from_dict(d) for d in json.loads(perturbations_json)))
    return perturbations.PerturbConfig(perturbations=series, filter=filter, retries=retries,
                                       seed=seed)


@fr.atomic("config")
def emt(fixed_cutoff: bool = True) -> calculators.CalculatorConfig:
    """ASE's :class:`~pyiron_assyst.calculators.EMT` potential."""
    return calculators.EMT(fixed_cutoff=fixed_cutoff)


@fr.atomic("config")
def morse(
    epsilon: float = _MORSE.epsilon, r0: float = _MORSE.r0, rho0: float = _MORSE.rho0,
    rcut1: float = _MORSE.rcut1, rcut2: float = _MORSE.rcut2,
) -> calculators.CalculatorConfig:
    """:class:`~pyiron_assyst.calculators.Morse` pair potential (energy in eV, lengths in
    Å)."""
    return calculators.Morse(epsilon=epsilon, r0=r0, rho0=rho0, rcut1=rcut1, rcut2=rcut2)


@fr.atomic("config")
def lennard_jones(
    sigma: float = _LJ.sigma, epsilon: float = _LJ.epsilon, rc: float | None = _LJ.rc,
    smooth: bool = _LJ.smooth,
) -> calculators.CalculatorConfig:
    """:class:`~pyiron_assyst.calculators.LennardJones` pair potential (σ and cut-off in Å, ε
    in eV)."""
    return calculators.LennardJones(sigma=sigma, epsilon=epsilon, rc=rc, smooth=smooth)


@fr.atomic("config")
def curation_config(
    energy_cap: float | None = _CURATION.energy_cap,
    energy_mode: str = _CURATION.energy_mode,
    force_cap: float | None = _CURATION.force_cap,
    distance: filters.Filter | None = _CURATION.distance,
    deduplicate: bool = _CURATION.deduplicate,
    duplicate_tolerance: float = _CURATION.duplicate_tolerance,
    neighbors: int = _CURATION.neighbors,
) -> curate.CurationConfig:
    """:class:`~pyiron_assyst.stages.curate.CurationConfig` field by field (``energy_mode``
    ``relative`` or ``absolute``; energy cap in
    eV/atom, force cap in eV/Å, tolerance in Å); the distance check from a distance-filter
    node."""
    return curate.CurationConfig(
        energy_cap=energy_cap, energy_mode=energy_mode, force_cap=force_cap, distance=distance,
        deduplicate=deduplicate, duplicate_tolerance=duplicate_tolerance, neighbors=neighbors)


@fr.atomic("config")
def short_range_config(
    enabled: bool = _SHORT.enabled,
    isolated: bool = _SHORT.isolated,
    dimer_fractions: list = list(_SHORT.dimer_fractions),  # noqa: B006 - a JSON constant
    trimer_fractions: list = list(_SHORT.trimer_fractions),  # noqa: B006
    compressions: list = list(_SHORT.compressions),  # noqa: B006
    box: float = _SHORT.box,
) -> short_range.ShortRangeConfig:
    """:class:`~pyiron_assyst.stages.short_range.ShortRangeConfig` field by field (fractions
    of the bond length; compressions as linear factors; box in Å)."""
    return short_range.ShortRangeConfig(
        enabled=enabled, isolated=isolated, dimer_fractions=tuple(dimer_fractions),
        trimer_fractions=tuple(trimer_fractions), compressions=tuple(compressions), box=box)


@fr.atomic("config")
def select_config(
    method: str = _SELECT.method,
    fraction: float = _SELECT.fraction,
    count: int | None = _SELECT.count,
    seed: int = _SELECT.seed,
    regularization: float = _SELECT.regularization,
    cost_aware: bool = _SELECT.cost_aware,
    cost_model: cost.CostModel | None = None,
    keep_compositions: bool = _SELECT.keep_compositions,
    descriptor: descriptors.PowerSpectrum | descriptors.RadialDescriptor | None = None,
) -> select.SelectConfig:
    """:class:`~pyiron_assyst.stages.select.SelectConfig` field by field (``method`` one of
    ``leverage``, ``leverage_top``, ``farthest``, ``random``; ``fraction`` of the pool in
    (0, 1] or a ``count``); the cost model and the descriptor from their nodes (``None``: the
    class defaults). In the pipeline ``fraction=1`` (its default there) switches selection
    off."""
    return select.SelectConfig(
        method=method, fraction=fraction, count=count, seed=seed,
        regularization=regularization, cost_aware=cost_aware,
        cost_model=_COST if cost_model is None else cost_model,
        keep_compositions=keep_compositions,
        descriptor=_POWER if descriptor is None else descriptor)


@fr.atomic("config")
def cost_model(
    reference_core_hours: float = _COST.reference_core_hours,
    atom_exponent: float = _COST.atom_exponent,
    relax_step_fraction: float = _COST.relax_step_fraction,
) -> cost.CostModel:
    """:class:`~pyiron_assyst.calculators.cost.CostModel`: core-hours of a single point of
    one atom at one k-point, the exponent of the atom count, a relaxation step's share."""
    return cost.CostModel(reference_core_hours=reference_core_hours,
                          atom_exponent=atom_exponent, relax_step_fraction=relax_step_fraction)


@fr.atomic("config")
def power_spectrum(
    cutoff: float = _POWER.cutoff,
    n_radial: int = _POWER.n_radial,
    l_max: int = _POWER.l_max,
    reduce: str = _POWER.reduce,
) -> descriptors.PowerSpectrum:
    """:class:`~pyiron_assyst.stages.descriptors.PowerSpectrum` (cutoff in Å; ``reduce``
    ``sum`` or ``mean``)."""
    return descriptors.PowerSpectrum(cutoff=cutoff, n_radial=n_radial, l_max=l_max,
                                     reduce=reduce)


@fr.atomic("config")
def radial_descriptor(
    cutoff: float = _RADIAL.cutoff,
    n_radial: int = _RADIAL.n_radial,
) -> descriptors.RadialDescriptor:
    """:class:`~pyiron_assyst.stages.descriptors.RadialDescriptor` (cutoff in Å)."""
    return descriptors.RadialDescriptor(cutoff=cutoff, n_radial=n_radial)


@fr.atomic("config")
def executor(
    kind: str = _EXECUTOR.kind,
    max_workers: int = _EXECUTOR.max_workers,
    cores: int = _EXECUTOR.cores,
    threads_per_core: int = _EXECUTOR.threads_per_core,
    gpus_per_core: int = _EXECUTOR.gpus_per_core,
    run_time_max: int | None = _EXECUTOR.run_time_max,
    partition: str | None = _EXECUTOR.partition,
    scheduler_args: list = [],  # noqa: B006 - a JSON constant, never mutated
    chunk_size: int = _EXECUTOR.chunk_size,
    cache_directory: str | None = _EXECUTOR.cache_directory,
    task_timeout: float | None = _EXECUTOR.task_timeout,
) -> executors.Executor:
    """:class:`~pyiron_assyst.execution.executors.Executor` field by field (``kind`` one of
    ``serial``, ``process``, ``single_node``, ``slurm_cluster``, ``slurm_job``; run time in
    minutes, task timeout in s)."""
    return executors.Executor(
        kind=kind, max_workers=max_workers, cores=cores, threads_per_core=threads_per_core,
        gpus_per_core=gpus_per_core, run_time_max=run_time_max, partition=partition,
        scheduler_args=scheduler_args, chunk_size=chunk_size,
        cache_directory=cache_directory, task_timeout=task_timeout)


FORMS: dict[type, Callable[..., Any]] = {
    sample.Formulas: formulas,
    sample.SampleConfig: sample_config,
    filters.AspectFilter: aspect_filter,
    filters.DistanceFilter: distance_filter,
    filters.VolumeFilter: volume_filter,
    relax.VolumeRelax: volume_relax,
    relax.FullRelax: full_relax,
    perturbations.PerturbConfig: perturb_config,
    calculators.EMT: emt,
    calculators.Morse: morse,
    calculators.LennardJones: lennard_jones,
    curate.CurationConfig: curation_config,
    short_range.ShortRangeConfig: short_range_config,
    select.SelectConfig: select_config,
    cost.CostModel: cost_model,
    descriptors.PowerSpectrum: power_spectrum,
    descriptors.RadialDescriptor: radial_descriptor,
    executors.Executor: executor,
}
"""The form node of each config class that has one (exact classes, not subclasses)."""


def form_of(config: Config) -> Callable[..., Any] | None:
    """The form node of ``config``'s class; :func:`all_of` for an ``&`` of two filters;
    ``None`` when there is none (then the config goes in as JSON text)."""
    if isinstance(config, filters.AllOf) and len(config.filters) == 2:
        return all_of
    return FORMS.get(type(config))


def _jsonable(value: Any) -> Any:
    """A field value as the form's input takes it: tuples as lists, pairs as a dict."""
    if isinstance(value, tuple):
        if value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                         for v in value):
            return {k: _jsonable(v) for k, v in value}
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return None
    return value


def fields_of(config: Config) -> dict[str, Any]:
    """The inputs of ``config``'s form (:func:`form_of`) that differ from the form's
    defaults: JSON-able values, or nested configs (for child nodes).

    Raises ``TypeError`` when ``config`` has no form.
    """
    form = form_of(config)
    if form is None:
        raise TypeError(f"no form node for {type(config).__name__}")
    if form is all_of:
        return dict(zip(("first", "second"), config.filters, strict=True))
    given = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    given = _ADAPT.get(form, dict)(given)
    if form is perturb_config:
        series = given.pop("perturbations")
        given["perturbations_json"] = (None if series == _PERTURB.perturbations
                                       else _series_json(series))
    defaults = {name: p.default for name, p in inspect.signature(form).parameters.items()}
    out = {}
    for name, value in given.items():
        value = value if isinstance(value, Config) else _jsonable(value)
        if name in defaults and value != _jsonable(defaults[name]) or name not in defaults:
            out[name] = value
    return out


def _split_pairs(given: dict[str, Any], field: str, into: str, default: Any) -> dict[str, Any]:
    """Move a field holding ``(name, value)`` pairs to the form's dict input ``into``."""
    if isinstance(given[field], tuple):
        given[into], given[field] = dict(given[field]), default
    return given


def _sample_fields(given: dict[str, Any]) -> dict[str, Any]:
    given["spacegroups"] = given["spacegroups"] or []
    return _split_pairs(given, "tolerance", "tolerance_radii", "metallic")


def _select_fields(given: dict[str, Any]) -> dict[str, Any]:
    """Nested configs equal to their class defaults are the form's ``None``."""
    for field, default in (("cost_model", _COST), ("descriptor", _POWER)):
        if given[field] == default:
            given[field] = None
    return given


_ADAPT: dict[Callable[..., Any], Callable[[dict[str, Any]], dict[str, Any]]] = {
    sample_config: _sample_fields,
    select_config: _select_fields,
    distance_filter: lambda g: _split_pairs(g, "radii", "element_radii", 1.0),
}
"""Field -> form input renamings of forms whose inputs split a union field in two."""


def _series_json(series: tuple[Config, ...]) -> str:
    """The JSON text of a tuple of perturbations (what ``perturbations_json`` takes)."""
    return json.dumps([p.to_dict() for p in series])
