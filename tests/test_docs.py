"""The documentation: a strict Sphinx build, an API reference that covers every public name.

The docs are built once per module with ``-W --keep-going`` (warnings are errors, as in CI)
into a temporary directory. The docs requirements (sphinx, myst-parser, furo) are needed; where
they are missing the tests skip, except under CI (``CI`` set), where they fail. The build takes
~15 s of CPU (30-50 s wall on a busy machine), so the tests that need it are marked slow.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyiron_assyst
from pyiron_assyst.calculators import EMT
from pyiron_assyst.core.info_keys import info_table
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.curate import CurationConfig
from pyiron_assyst.stages.filters import AspectFilter, DistanceFilter, VolumeFilter
from pyiron_assyst.stages.perturbations import PerturbConfig, RandomChoice, Rattle, Stretch
from pyiron_assyst.stages.relax import FullRelax, VolumeRelax
from pyiron_assyst.stages.sample import SampleConfig
from pyiron_assyst.stages.select import SelectConfig
from pyiron_assyst.stages.short_range import ShortRangeConfig

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        reason = f"docs requirement missing: {error} (pip install '.[docs]')"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def public_modules() -> dict[str, object]:
    """Every public module of the package (no ``_`` in its dotted path) that imports.

    A module whose import lacks only a third-party package is left out, as the docs do; any
    other import error fails the test.
    """
    modules = {"pyiron_assyst": pyiron_assyst}
    for info in pkgutil.walk_packages(pyiron_assyst.__path__, "pyiron_assyst."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        try:
            modules[info.name] = importlib.import_module(info.name)
        except ModuleNotFoundError as error:
            if (error.name or "pyiron_assyst").split(".")[0] == "pyiron_assyst":
                raise
    return modules


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The HTML docs, built with warnings as errors; the output directory."""
    for module in ("sphinx", "myst_parser", "furo", "bs4"):
        _require(module)
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
               "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stderr[-6000:]}"
    return out / "html"


def _inventory(html: Path) -> dict[str, dict[str, tuple]]:
    from sphinx.util.inventory import InventoryFile

    with open(html / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    data = getattr(inventory, "data", inventory)  # a _Inventory object from Sphinx 8.2 on
    out: dict[str, dict[str, tuple]] = {}
    for role, entries in data.items():
        for name, entry in entries.items():
            out.setdefault(name, {})[role] = entry
    return out


def _uri(entry) -> str:
    return entry.uri if hasattr(entry, "uri") else entry[2]


def _soup(path: Path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


@pytest.mark.slow
def test_every_public_name_is_documented_in_the_api_reference(built):
    inventory = _inventory(built)
    modules = public_modules()
    assert {"pyiron_assyst.stages.sample", "pyiron_assyst.workflow.macro", "pyiron_assyst.storage",
            "pyiron_assyst.core.info_keys"} <= set(modules)
    missing, elsewhere = [], []
    for modname, module in modules.items():
        assert "py:module" in inventory.get(modname, {}), f"no API page for {modname}"
        page = _uri(inventory[modname]["py:module"]).split("#")[0]
        assert page == f"api/generated/{modname}.html"
        for name in getattr(module, "__all__", ()):
            entries = {role: e for role, e in inventory.get(f"{modname}.{name}", {}).items()
                       if role.startswith("py:")}
            if not entries:
                missing.append(f"{modname}.{name}")
            elif not any(_uri(e).startswith(f"{page}#") for e in entries.values()):
                elsewhere.append(f"{modname}.{name}")
    assert missing == [], f"public names without API docs: {missing}"
    assert elsewhere == [], f"public names documented outside their module's page: {elsewhere}"


@pytest.mark.slow
def test_api_pages_are_exactly_the_public_modules(built):
    pages = {p.stem for p in (built / "api" / "generated").glob("*.html")}
    assert pages == set(public_modules())


@pytest.mark.slow
def test_info_key_table_is_rendered_from_the_declaration(built):
    table = _soup(built / "info-keys.html").find("table", class_="info-keys")
    assert table is not None
    header = [th.get_text(strip=True) for th in table.find("thead").find_all("th")]
    assert header == ["name", "type", "unit", "stage", "description"]
    rows = [[td.get_text(" ", strip=True) for td in tr.find_all("td")]
            for tr in table.find("tbody").find_all("tr")]
    assert rows == [[row[c] for c in header] for row in info_table()]


@pytest.mark.slow
def test_custom_relaxer_example_is_the_tested_class(built):
    code = _soup(built / "custom-relaxer.html").find("article").get_text()
    assert "class GoldenVolumeRelax(Relaxation):" in code
    assert "def minimize(self, atoms: Atoms, calculator) -> Minimization:" in code
    assert "golden-start" not in code
    assert "golden-end" not in code
    assert "class BrokenRelax" not in code


@pytest.mark.slow
def test_pages_written_by_others_are_linked_when_present(built):
    index = _soup(built / "index.html")
    links = {a.get("href", "").split("#")[0] for a in index.find_all("a")}
    for page in ("units", "hpc", "storage", "fitting", "defaults", "custom-relaxer",
                 "info-keys", "stages/01-sample", "stages/04-filter", "api/index"):
        present = (DOCS / f"{page}.md").is_file()
        assert (f"{page}.html" in links) == present, page
        assert (built / f"{page}.html").is_file() == present, page


def test_defaults_page_states_the_macro_defaults():
    """docs/defaults.md explains these numbers; change the page when one of them changes."""
    import inspect

    from pyiron_assyst.workflow.macro import assyst

    defaults = {k: p.default for k, p in inspect.signature(assyst).parameters.items()}
    sample = defaults["sample_config"]
    assert sample == SampleConfig(max_atoms=10, min_atoms=1, tolerance="metallic", repeat=1,
                                  max_retries=2, symprec=1e-3, vacuum=10.0, seed=0)
    assert sample.groups == tuple(range(1, 231))
    assert defaults["sample_filter"] == AspectFilter(6.0)
    assert defaults["volume_relax"] == VolumeRelax(force_tolerance=1e-3, max_steps=100,
                                                   optimizer="SafeLBFGS", keep_unconverged=True)
    assert defaults["full_relax"] == FullRelax(force_tolerance=1e-3, max_steps=100,
                                               optimizer="SafeLBFGS", keep_unconverged=True)
    rattle = Rattle(0.25) + Stretch(hydro=0.05, shear=0.005, minimum_strain=1e-3)
    stretch = RandomChoice(Stretch(hydro=0.80, shear=0.05), Stretch(hydro=0.05, shear=0.20),
                           chance=0.3)
    assert defaults["perturb_config"] == PerturbConfig((rattle,) * 4 + (stretch,) * 4,
                                                       filter=DistanceFilter(1.0), retries=10,
                                                       seed=0)
    assert defaults["final_filter"] == DistanceFilter(1.0) & VolumeFilter(maximum=300.0)
    assert defaults["calculator"] == EMT()
    assert defaults["short_range_config"] == ShortRangeConfig(
        enabled=True, isolated=True, dimer_fractions=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3, 1.5),
        trimer_fractions=(0.6, 0.7, 0.8, 0.9, 1.0), compressions=(0.8,), box=12.0)
    assert defaults["executor"] == Executor(kind="process", max_workers=0)
    assert defaults["select_config"] == SelectConfig(fraction=1.0)  # off: label everything
    assert defaults["reference"] is None  # the relaxation calculator
    assert defaults["curation"] == CurationConfig(energy_cap=10.0, energy_mode="relative",
                                                  force_cap=50.0, distance=None,
                                                  deduplicate=True, duplicate_tolerance=0.01)
    text = (DOCS / "defaults.md").read_text(encoding="utf-8")
    for stated in ("10 eV/atom above the lowest", "50 eV/Å", "0.01 Å", "`None`: the "
                   "`calculator`"):
        assert stated in text, stated
    for stated in ("AspectFilter(6)", "force_tolerance=1e-3", "max_steps=100", "Rattle(0.25)",
                   "Stretch(hydro=0.05, shear=0.005)", "chance=0.3", "DistanceFilter(1.0)",
                   "VolumeFilter(maximum=300.0)", "retries=10", "| 10 |",
                   "`SelectConfig(fraction=1.0)`: off"):
        assert stated in text, stated
