"""What a run is, in words a user recognises: formulas, calculator, date.

Runs are named by a hash of their science (``run-<10 hex>``); ``status`` and ``show`` print
this description next to the name, and the summary files of a run start with it.
"""

from __future__ import annotations

from typing import Any

from pyiron_assyst.storage import Project

__all__ = ["calculator_name", "describe_configs", "describe_run", "formulas_text",
           "stage_calculators"]


def formulas_text(formulas: Any) -> str:
    """``"Cu, 1-3 atoms, 3 formulas"``: elements, atom-count range and number of formulas."""
    counts = [sum(n for _, n in formula) for formula in formulas.formulas]
    if not counts:
        return "no formulas"
    elements = ", ".join(sorted(formulas.elements))
    low, high = min(counts), max(counts)
    atoms = f"{low}-{high} atoms" if low != high else f"{low} atom{'s' if low != 1 else ''}"
    return f"{elements}, {atoms}, {len(counts)} formula{'s' if len(counts) > 1 else ''}"


def calculator_name(config: Any) -> str:
    """A calculator config's short name: its class (``EMT``, ``Gpaw``), or for a wrapped ASE
    calculator the class it imports (``LoggedEMT`` of ``tests.support…:LoggedEMT``)."""
    if config is None:
        return ""
    path = getattr(config, "import_path", None)
    if isinstance(path, str) and path:
        return path.replace(":", ".").rsplit(".", 1)[-1]
    return type(config).__name__


def stage_calculators(configs: dict[str, Any]) -> dict[str, str]:
    """``{stage: calculator name}`` of the stages whose energies a run's figures draw: the
    labelled sets are the reference's, the relaxed ones the relaxation calculator's."""
    relaxing = calculator_name(configs.get("calculator"))
    labelling = calculator_name(configs.get("reference")) or relaxing
    return {"volume_relaxed": relaxing, "relaxed": relaxing, "training_set": labelling,
            "isolated_atoms": labelling}


def _calculator_text(configs: dict[str, Any]) -> str:
    name = calculator_name(configs.get("calculator")) or None
    label = calculator_name(configs.get("reference")) or None
    if name and label and label != name:
        return f"relaxed with {name}, labelled with {label}"
    return name or label or "no calculator"


def describe_configs(configs: dict[str, Any]) -> str:
    """Formulas and calculators of a run's configs (``formulas`` included); a relabel run
    (``source``) names its source instead of formulas."""
    source = configs.get("source")
    if "formulas" in configs:
        what = formulas_text(configs["formulas"])
        if source is not None:
            what += f", labels of {source.run}/{source.stage}"
    else:
        what = "unknown formulas"
    return f"{what}; {_calculator_text(configs)}"


def describe_run(project: Project, run: str) -> str:
    """``"Cu, 1-3 atoms, 3 formulas; EMT; created 2026-12-02 13:40 UTC"`` for ``run``.

    A run whose configs cannot be read (a foreign or newer config kind) is described by its
    date alone, with the reason, so that listing a project never fails on one run.
    """
    created = str(project.run_info(run)["created"])
    date = created.replace("T", " ")[:16] + " UTC"
    try:
        what = describe_configs(project.load_configs(run))
    except Exception as error:  # noqa: BLE001 - a listing must not fail on one run's configs
        what = f"configs unreadable ({type(error).__name__})"
    return f"{what}; created {date}"
