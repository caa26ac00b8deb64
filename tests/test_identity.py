"""Identity survives a refactor: a config's hash, and every uuid, random draw and cache key
derived from it, depend on its registered kind and fields, never on the module it lives in."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pyiron_workflow as pwf
import pytest
from ase.build import bulk

from pyiron_assyst.calculators import EMT, AseCalculator
from pyiron_assyst.core import config as config_module
from pyiron_assyst.core.config import (
    CONFIG_MODULES,
    Config,
    ConfigError,
    config_from_json,
    config_kind,
    import_object,
    kind_class,
)
from pyiron_assyst.core.lineage import stamp_root
from pyiron_assyst.stages.perturbations import Rattle, Stretch
from pyiron_assyst.stages.relax import FullRelax
from pyiron_assyst.workflow import nodes

REPO = Path(__file__).resolve().parents[1]

USER_MODULE = '''
from dataclasses import dataclass

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.stages.perturbations import Perturbation


@dataclass(frozen=True)
class Jiggle(Perturbation, kind="lab.Jiggle"):
    sigma: float = 0.05

    def apply(self, atoms, rng):
        new = atoms.copy()
        new.positions += rng.normal(0.0, self.sigma, new.positions.shape)
        return new


@dataclass(frozen=True)
class LabEMT(CalculatorConfig, kind="lab.EMT"):
    def get_calculator(self):
        from ase.calculators.emt import EMT

        return EMT()
'''

DRIVER = '''
import hashlib, json, sys
from ase.build import bulk
from pyiron_assyst.core.lineage import stamp_root
from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.perturb import perturb
from pyiron_assyst.stages.perturbations import Rattle
from pyiron_assyst.stages.relax import VolumeRelax, relax
from {module} import Jiggle, LabEMT

parent = stamp_root(bulk("Cu", "fcc", a=3.6) * (2, 1, 1), "00000000-0000-4000-8000-000000000001")
children, _ = perturb([parent], (Jiggle(0.05), Jiggle(0.05) + Rattle(0.02)), seed=3)
cache = ResultCache(sys.argv[1])
relaxed, _ = relax(children, VolumeRelax(max_steps=3), LabEMT(), Executor(kind="serial"), cache)
json.dump({{
    "hashes": [Jiggle(0.05).config_hash(), LabEMT().config_hash()],
    "json": [Jiggle(0.05).to_json(), LabEMT().to_json()],
    "uuids": [c.info["uuid"] for c in children + relaxed],
    "positions": [hashlib.sha256(c.positions.tobytes()).hexdigest() for c in children + relaxed],
    "cache": sorted(p.name for p in __import__("pathlib").Path(sys.argv[1]).rglob("*")
                    if p.is_file()),
}}, sys.stdout)
'''


def _run_from(package: str, tmp_path: Path) -> dict:
    """Define the user's configs in module ``package`` and run perturb + relax in a new process."""
    module_dir = tmp_path / package.replace(".", "/")
    module_dir.mkdir(parents=True)
    for parent in [*module_dir.relative_to(tmp_path).parents][:-1]:
        (tmp_path / parent / "__init__.py").touch()
    (module_dir / "__init__.py").touch()
    (module_dir / "configs.py").write_text(USER_MODULE)
    cache = tmp_path / f"cache-{package}"
    script = DRIVER.format(module=f"{package}.configs")
    proc = subprocess.run([sys.executable, "-c", script, str(cache)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_moving_a_config_class_keeps_hashes_uuids_draws_and_cache_keys(tmp_path):
    before = _run_from("lab_old", tmp_path)
    after = _run_from("lab.moved.elsewhere", tmp_path)
    assert before == after
    assert len(set(before["uuids"])) == 4
    assert len(before["cache"]) >= 2  # one entry per relaxation, same names in both
    assert json.loads(before["json"][0])["@config"] == "lab.Jiggle"


def test_package_kinds_are_class_names_and_hashes_ignore_the_module(monkeypatch):
    for name in CONFIG_MODULES:
        __import__(name)
    kinds = {kind: cls for kind, cls in config_module._KINDS.items()
             if cls.__module__.startswith("pyiron_assyst.")}
    assert len(kinds) > 30
    assert all(kind == cls.__qualname__ and ":" not in kind for kind, cls in kinds.items())
    configs = [Rattle(0.1), Stretch(0.05, 0.01), FullRelax(max_steps=7), EMT()]
    before = [c.config_hash() for c in configs]
    for config in configs:  # what a move to another module changes about a class
        monkeypatch.setattr(type(config), "__module__", "pyiron_assyst.somewhere_else")
    assert [c.config_hash() for c in configs] == before
    assert [json.loads(c.to_json())["@config"] for c in configs] == [
        "Rattle", "Stretch", "FullRelax", "EMT"]


def test_json_written_before_kinds_still_loads():
    old = {"@config": "pyiron_assyst.perturbations:Rattle", "sigma": 0.1}
    assert config_from_json(json.dumps(old)) == Rattle(0.1)
    nested = {"@config": "pyiron_assyst.relaxations:FullRelax", "max_steps": 7}
    assert kind_class(nested["@config"]) is FullRelax
    with pytest.raises(ConfigError, match="unknown config kind 'NoSuchRelax'"):
        kind_class("NoSuchRelax")


def test_a_kind_is_registered_once():
    with pytest.raises(ConfigError, match="kind 'Rattle'.*is taken by"):
        type("Rattle", (Config,), {"__module__": "somebody.else"}, kind="Rattle")
    assert config_kind(Rattle) == "Rattle"


def test_old_module_names_are_the_new_modules_with_a_warning():
    import pyiron_assyst.stages.sample as new

    sys.modules.pop("pyiron_assyst.crystals", None)
    with pytest.warns(FutureWarning, match="pyiron_assyst.crystals moved to "
                                           "pyiron_assyst.stages.sample"):
        import pyiron_assyst.crystals as old
    assert old is new
    assert new.__spec__.name == "pyiron_assyst.stages.sample"


def test_a_recipe_with_old_node_paths_still_rebuilds_and_runs():
    import flowrep as fr

    wf = pwf.Workflow("old")
    wf.create_input("structures", type_hint=list)
    wf.keep = pwf.node(nodes.apply_filter)
    wf.connect(wf.inputs.structures, wf.keep.inputs.structures)
    wf.create_output_from(wf.keep.outputs.structures, label="kept")
    new_path = "pyiron_assyst.workflow.nodes"
    text = wf.recipe.model_dump_json()
    assert new_path in text
    text = text.replace(new_path, "pyiron_assyst.nodes")  # as a run stored before the move
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        rebuilt = pwf.Workflow.from_recipe(fr.schemas.WorkflowRecipe.model_validate_json(text),
                                           "old")
    structures = [stamp_root(bulk("Cu"), "00000000-0000-4000-8000-000000000002")]
    result = rebuilt.run(structures=structures)
    assert [s.info["uuid"] for s in result.outputs["kept"]] == [
        structures[0].info["uuid"]]


@pytest.mark.parametrize("path", [
    "pyiron_assyst.execution.cache:os.system",       # walks into another module
    "pyiron_assyst.core.config:json.dumps",
    "pyiron_assyst.core.config:importlib.import_module",
])
def test_import_paths_reach_only_objects_defined_in_allowed_modules(path):
    with pytest.raises(ConfigError, match="not allowed|walks into module"):
        import_object(path)
    with pytest.raises(ConfigError):
        AseCalculator(path)


def test_an_allowed_object_imported_into_another_module_is_refused():
    # Atoms is imported into pyiron_assyst modules but defined in ase: not allow-listed
    with pytest.raises(ConfigError, match="defined in 'ase.atoms'"):
        import_object("pyiron_assyst.core.lineage:Atoms")
    assert import_object("ase.calculators.emt:EMT").__name__ == "EMT"


def test_the_fit_types_still_load_from_their_old_module():
    """The fit's types left ``fitting.mace`` for modules of their own: a pickle (or a stored
    recipe) that names them there loads the same class, and the old imports work."""
    import pickle

    from pyiron_assyst.fitting import mace
    from pyiron_assyst.fitting.fit_config import FitConfig

    config = FitConfig(epochs=3, seed=2)
    data = pickle.dumps(config, protocol=0)
    old = data.replace(b"pyiron_assyst.fitting.fit_config", b"pyiron_assyst.fitting.mace")
    assert old != data
    assert pickle.loads(old) == config
    assert mace.BACKENDS == ("mace",)
    for name in ("FitConfig", "FitError", "FitReport", "MaceModel", "isolated_energies",
                 "root_of", "split_by_lineage", "training_targets"):
        assert getattr(mace, name).__module__.startswith("pyiron_assyst.fitting."), name
