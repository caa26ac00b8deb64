"""The stages run through pyiron_assyst, with the same settings as :mod:`impl_reference`.

Every function returns ``(structures, StageReport)``. ``executor`` is
``Executor(kind="serial")`` for one core and ``Executor(kind="process", max_workers=2)`` for two.
Labelling uses :func:`pyiron_assyst.stages.label.label` when that module exists; otherwise a clearly
marked stand-in (:func:`_label_by_evaluation`) evaluates every structure with
:func:`pyiron_assyst.calculators.evaluation.evaluate` over the executor
(:data:`LABEL_IMPLEMENTATION` says
which one ran).
"""

from __future__ import annotations

from collections.abc import Sequence

from ase import Atoms
from bench_common import Case

from pyiron_assyst.calculators import EMT
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.filters import AspectFilter, DistanceFilter, VolumeFilter, apply_filter
from pyiron_assyst.stages.perturb import perturb_with
from pyiron_assyst.stages.perturbations import PerturbConfig
from pyiron_assyst.stages.relax import FullRelax, VolumeRelax
from pyiron_assyst.stages.relax import relax as _relax
from pyiron_assyst.stages.sample import Formulas, SampleConfig
from pyiron_assyst.stages.sample import sample as _sample

try:
    from pyiron_assyst.stages.label import label as _label

    LABEL_IMPLEMENTATION = "pyiron_assyst.stages.label.label"
except ImportError:  # the label stage is written by another helper
    _label = None
    LABEL_IMPLEMENTATION = "STAND-IN: pyiron_assyst.calculators.evaluation.evaluate over run_tasks"

NAME = "pyiron_assyst"
CALCULATOR = EMT()
SERIAL = Executor(kind="serial")
TWO_CORES = Executor(kind="process", max_workers=2)
SAMPLE_FILTER = AspectFilter(6.0)
FINAL_FILTER = DistanceFilter(1.0) & VolumeFilter(maximum=300.0)


def relaxation(kind: str, max_steps: int = 100, optimizer: str | None = None
               ) -> VolumeRelax | FullRelax:
    """Volume or full relaxation to 1e-3 eV/Å in ``max_steps``; pyiron_assyst's default
    optimizer (``SafeLBFGS``) unless ``optimizer`` names another (``"LBFGS"``: ASE's, as the
    reference uses)."""
    cls = {"volume": VolumeRelax, "full": FullRelax}[kind]
    chosen = {} if optimizer is None else {"optimizer": optimizer}
    return cls(force_tolerance=1e-3, max_steps=max_steps, **chosen)


def executor(cores: int) -> Executor:
    """Serial for one core, two local worker processes for two."""
    return SERIAL if cores == 1 else Executor(kind="process", max_workers=cores)


def formulas(case: Case) -> Formulas:
    return Formulas(tuple(dict(f) for f in case.formulas))


def sample_config(case: Case) -> SampleConfig:
    return SampleConfig(spacegroups=case.spacegroups, max_atoms=case.max_atoms, seed=case.seed)


def perturb_config(case: Case) -> PerturbConfig:
    """The published perturbation set (the default), kept when no pair is closer than 2 Å."""
    return PerturbConfig(filter=DistanceFilter(1.0), retries=10, seed=case.seed)


def sample(case: Case, cores: int) -> tuple[list[Atoms], StageReport, StageReport]:
    """Sampled crystals after ``AspectFilter(6)``: structures, sample and filter reports."""
    drawn, report = _sample(formulas(case), sample_config(case), executor(cores))
    kept, filter_report = apply_filter(drawn, SAMPLE_FILTER, "sample_filter")
    return kept, report, filter_report


def relax(structures: Sequence[Atoms], kind: str, cores: int, max_steps: int = 100,
          optimizer: str | None = None) -> tuple[list[Atoms], StageReport]:
    return _relax(structures, relaxation(kind, max_steps, optimizer), CALCULATOR,
                  executor(cores))


def converged(report: StageReport) -> float:
    """Fraction of the relaxed structures that reached the force tolerance."""
    return 1.0 - len(report.flagged) / max(1, report.n_in)


def perturb(structures: Sequence[Atoms], case: Case) -> tuple[list[Atoms], StageReport]:
    return perturb_with(list(structures), perturb_config(case))


def final_filter(structures: Sequence[Atoms]) -> tuple[list[Atoms], StageReport]:
    return apply_filter(list(structures), FINAL_FILTER, "final_filter")


def label(structures: Sequence[Atoms], cores: int) -> tuple[list[Atoms], StageReport]:
    if _label is not None:
        return _label(structures, CALCULATOR, executor(cores))
    return _label_by_evaluation(structures, cores)


def _label_by_evaluation(structures: Sequence[Atoms], cores: int) -> tuple[list[Atoms],
                                                                           StageReport]:
    """STAND-IN for the label stage: ``evaluate`` every structure over the executor."""
    import time

    from pyiron_assyst.execution.executors import run_tasks

    start = time.perf_counter()
    outcomes = run_tasks(_evaluate_task, [(a.copy(), CALCULATOR) for a in structures],
                         executor(cores), desc="label")
    out, drops, calls, seconds = [], [], 0, 0.0
    for atoms, outcome in zip(structures, outcomes):
        if getattr(outcome, "value", None) is None:
            drops.append(Drop(atoms.info.get("uuid", "?"), "calculator_error", str(outcome)))
            continue
        out.append(outcome.value)
        calls += outcome.force_calls
        seconds += outcome.calculator_time
    return out, StageReport(stage="label", n_in=len(structures), n_candidates=len(structures),
                            n_out=len(out), drops=tuple(drops),
                            wall_time=time.perf_counter() - start, calculator_time=seconds,
                            force_calls=calls)


def _evaluate_task(item):
    from pyiron_assyst.calculators.evaluation import evaluate

    atoms, calculator = item
    return evaluate(atoms, calculator)


def warm_worker(_: int) -> int:
    """Worker warm-up: import what the stages need and hold the worker a moment."""
    import time

    import pyxtal  # noqa: F401
    from ase.calculators.emt import EMT  # noqa: F401

    import pyiron_assyst.stages.relax  # noqa: F401
    import pyiron_assyst.stages.sample  # noqa: F401

    time.sleep(0.5)
    return 0
