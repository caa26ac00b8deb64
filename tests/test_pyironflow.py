"""The ASSYST graph in the PyironFlow widget, built headlessly (no browser, no kernel).

The widget's Python side is driven the way the browser drives it: commands through the
``commands`` trait (``"ungroup_node: <label> @ <stamp>"``, ``"run executed @ <stamp>"``) and
port edits through ``unlock_port`` / ``commit_entry``. What the browser would draw is read from
the ``nodes`` and ``edges`` traits (JSON).
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
import warnings
from collections import Counter

import pyiron_workflow as pwf
import pytest

from pyiron_assyst.calculators import EMT
from pyiron_assyst.execution.executors import KINDS, Executor
from pyiron_assyst.stages.relax import FullRelax
from pyiron_assyst.stages.sample import Formulas, SampleConfig
from pyiron_assyst.workflow import forms
from pyiron_assyst.workflow.macro import OUTPUTS, assyst, build_workflow
from pyiron_assyst.workflow.pipeline import CONFIGS as PIPELINE_CONFIGS

pyironflow = pytest.importorskip("pyironflow")
port_cache_key = pytest.importorskip("pyironflow.wf_extensions").port_cache_key

FORMULAS = Formulas.range("Cu", 1, 3)
CONFIGS = {"sample_config": SampleConfig(spacegroups=(221, 229), seed=1),
           "executor": Executor(kind="serial")}
MACRO_INPUTS = ["formulas", "sample_config", "sample_filter", "volume_relax", "full_relax",
                "perturb_config", "final_filter", "select_config", "short_range_config",
                "calculator", "reference", "curation", "executor"]
MACRO_TYPES = ["Formulas", "SampleConfig", "Filter", "Relaxation", "Relaxation",
               "PerturbConfig", "Filter", "SelectConfig", "ShortRangeConfig", "CalculatorConfig",
               ["CalculatorConfig", "NoneType"],
               "CurationConfig", "Executor"]
BUILDERS = {  # the typed JSON builder node of each macro input
    "formulas": "formulas", "sample_config": "sample_config", "sample_filter": "filter",
    "volume_relax": "relaxation", "full_relax": "relaxation", "perturb_config": "perturb_config",
    "final_filter": "filter", "select_config": "select_config",
    "short_range_config": "short_range_config",
    "calculator": "calculator", "reference": "calculator",
    "curation": "curation_config", "executor": "executor"}


def builder_path(kind: str) -> str:
    return f"pyiron_assyst.workflow.nodes.{kind}_from_json"


FORMS = {  # the form node of each config of build_workflow(FORMULAS, **CONFIGS)
    "formulas": "formulas", "sample_config": "sample_config", "sample_filter": "aspect_filter",
    "volume_relax": "volume_relax", "full_relax": "full_relax",
    "perturb_config": "perturb_config", "final_filter": "all_of",
    "select_config": "select_config",
    "short_range_config": "short_range_config", "calculator": "emt",
    "reference": "emt", "curation": "curation_config", "executor": "executor"}
CHILDREN = {  # nested configs: child form nodes feeding a port of their parent's form
    "perturb_config_filter": ("distance_filter", "perturb_config", "filter"),
    "final_filter_first": ("distance_filter", "final_filter", "first"),
    "final_filter_second": ("volume_filter", "final_filter", "second")}


def form_path(form: str) -> str:
    return f"pyiron_assyst.workflow.forms.{form}"


STAGE_EDGES = {  # inside the macro, after ungrouping (labels without the prefix)
    "sample_0.structures->apply_filter_0.structures",
    "apply_filter_0.structures->relax_0.structures",
    "relax_0.structures->relax_1.structures",
    "relax_1.structures->perturb_0.structures",
    "apply_filter_0.structures->concatenate_0.sampled",
    "relax_0.structures->concatenate_0.volume_relaxed",
    "relax_1.structures->concatenate_0.relaxed",
    "perturb_0.structures->concatenate_0.perturbed",
    "concatenate_0.structures->apply_filter_1.structures",
    "apply_filter_1.structures->select_0.structures",
    "reference_calculator_0.calculator->select_0.calculator",
    "select_0.structures->add_short_range_0.filtered",
    "relax_1.structures->short_range_0.relaxed",
    "short_range_0.structures->add_short_range_0.short_range",
    "add_short_range_0.structures->label_and_curate_0.structures",
    "reference_calculator_0.calculator->label_and_curate_0.reference",
}
CONFIG_EDGES = {  # config node -> stage port, after ungrouping the macro
    "formulas": ["sample_0.formulas", "short_range_0.formulas", "label_and_curate_0.formulas"],
    "sample_config": ["sample_0.config"],
    "executor": ["sample_0.executor", "relax_0.executor", "relax_1.executor",
                 "label_and_curate_0.executor"],
    "sample_filter": ["apply_filter_0.filter"],
    "volume_relax": ["relax_0.config"],
    "calculator": ["relax_0.calculator", "relax_1.calculator",
                   "reference_calculator_0.calculator"],
    "reference": ["reference_calculator_0.reference"],
    "curation": ["label_and_curate_0.curation"],
    "full_relax": ["relax_1.config"],
    "perturb_config": ["perturb_0.config"],
    "final_filter": ["apply_filter_1.filter"],
    "select_config": ["select_0.config"],
    "short_range_config": ["short_range_0.config"],
}


class Gui:
    """A headless PyironFlow and its first tab, with the browser's commands."""

    def __init__(self, items: list) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.flow = pyironflow.PyironFlow(items, library_roots=None)
        self.widget = self.flow.wf_widgets[0]
        self._stamps = itertools.count()

    def command(self, text: str) -> None:
        self.widget.gui.commands = f"{text} @ {next(self._stamps)}"

    def nodes(self) -> dict[str, dict]:
        return {n["id"]: n["data"] for n in json.loads(self.widget.gui.nodes)}

    def edges(self) -> set[str]:
        return {e["id"] for e in json.loads(self.widget.gui.edges)}

    def ports(self, node: str, side: str = "target") -> dict[str, dict]:
        data = self.nodes()[node]
        keys = ("labels", "types", "types_raw") + (
            ("defaults", "has_default") if side == "target" else ())
        rows = zip(*(data[f"{side}_{key}"] for key in keys))
        return {row[0]: dict(zip(keys[1:], row[1:])) for row in rows}


@pytest.fixture
def recipe_gui():
    """The workflow of :func:`build_workflow`, loaded from its recipe, wrapper ungrouped."""
    gui = Gui([build_workflow(FORMULAS, **CONFIGS).recipe])
    assert list(gui.nodes()) == ["workflow"]
    gui.command("ungroup_node: workflow")
    yield gui
    gui.flow.close()


def test_macro_node_shows_typed_inputs_with_defaults():
    gui = Gui([pwf.node(assyst)])
    nodes = gui.nodes()
    assert list(nodes) == ["assyst"]
    data = nodes["assyst"]
    assert data["import_path"] == "pyiron_assyst.workflow.macro.assyst"
    assert data["ungroup"] == "confirm"  # ungrouping loses the python reference
    ports = gui.ports("assyst")
    signature = inspect.signature(assyst).parameters
    assert list(ports) == list(signature)
    assert [ports[k]["types_raw"] for k in MACRO_INPUTS] == MACRO_TYPES
    assert all(ports[k]["types"] == "none" for k in MACRO_INPUTS)  # configs: fed by nodes
    assert {k: p["has_default"] for k, p in ports.items()} == {
        k: p.default is not inspect.Parameter.empty for k, p in signature.items()}
    for name, port in ports.items():  # JSON-able extras (e.g. a directory) are editable fields
        if name not in MACRO_INPUTS:
            assert port["types"] != "none", name
            assert port["defaults"] == repr(signature[name].default), name
    assert data["source_labels"] == list(OUTPUTS)
    gui.flow.close()


def test_macro_outputs_are_typed():
    gui = Gui([pwf.node(assyst)])
    types = [p["types_raw"] for p in gui.ports("assyst", "source").values()]
    gui.flow.close()
    assert types == ["list"] * 10 + ["StageReport"] * 11 + ["dict"]


def test_workflow_object_loads_directly():
    """A Workflow object shows the same graph as its recipe: nodes, their ports and edges."""
    workflow = build_workflow(FORMULAS, **CONFIGS)
    direct, from_recipe = Gui([workflow]), Gui([workflow.recipe])
    try:
        graphs = []
        for gui in (direct, from_recipe):
            (label,) = gui.nodes()
            gui.command(f"ungroup_node: {label}")
            nodes = {key.removeprefix(label): key for key in gui.nodes()}
            edges = {re.sub(rf"(^|->){label}", r"\1", edge) for edge in gui.edges()}
            ports = {short: gui.ports(key) for short, key in nodes.items()}
            graphs.append((ports, edges))
        assert len(graphs[0][0]) > len(CONFIG_EDGES)
        assert graphs[0] == graphs[1]
    finally:
        direct.flow.close()
        from_recipe.flow.close()


def test_macro_inputs_are_the_pipeline_declaration():
    assert ["formulas", *(c.name for c in PIPELINE_CONFIGS)] == MACRO_INPUTS
    assert {"formulas": "formulas", **{
        c.name: c.builder.removesuffix("_from_json") for c in PIPELINE_CONFIGS}} == BUILDERS


def test_config_nodes_show_each_config_field_by_field(recipe_gui):
    gui = recipe_gui
    nodes = gui.nodes()
    config_nodes = {label.removeprefix("workflow_cfg_"): data["import_path"]
                    for label, data in nodes.items() if label.startswith("workflow_cfg_")}
    assert config_nodes == {**{k: form_path(f) for k, f in FORMS.items()},
                            **{k: form_path(f) for k, (f, _, _) in CHILDREN.items()}}
    expected = {"formulas": FORMULAS, **{k: p.default for k, p in _macro_defaults().items()},
                **CONFIGS}
    expected["reference"] = expected["calculator"]  # the recipe names the label calculator
    for name in MACRO_INPUTS:  # each config node rebuilds its config from what it shows
        assert _built(gui, f"workflow_cfg_{name}") == expected[name], name
    sample = gui.ports("workflow_cfg_sample_config")
    assert {k: (p["types"], p["types_raw"], p["defaults"]) for k, p in sample.items()
            if k in ("max_atoms", "repeat", "symprec", "spacegroups")} == {
        "max_atoms": ("text", "int", "10"), "repeat": ("text", "int", "1"),
        "symprec": ("text", "float", "0.001"), "spacegroups": ("text", "list", "[]")}
    locked = nodes["workflow_cfg_sample_config"]["target_locked"]
    assert sorted(locked) == ["seed", "spacegroups"]  # given to build_workflow: constants
    assert all(entry["releasable"] for entry in locked.values())  # unlock, then type
    assert gui.ports("workflow_cfg_full_relax")["max_steps"]["defaults"] == "100"
    assert gui.ports("workflow_cfg_executor")["kind"]["types"] == "text"
    assert gui.edges() == {f"workflow_cfg_{k}.config->workflow_assyst.{k}"
                           for k in MACRO_INPUTS} | {
        f"workflow_cfg_{child}.config->workflow_cfg_{parent}.{port}"
        for child, (_, parent, port) in CHILDREN.items()}


def _built(gui: Gui, label: str) -> object:
    """The config a form node of the widget builds from its locked fields and children."""
    data = gui.nodes()[label]
    fields = {port: gui.widget.locked[port_cache_key(label, port)]
              for port in data["target_locked"]}
    for edge in gui.edges():
        source, target = edge.split("->")
        if target.startswith(label + "."):
            fields[target.split(".")[1]] = _built(gui, source.split(".")[0])
    return getattr(forms, data["import_path"].rsplit(".", 1)[1])(**fields)


def test_ungrouped_macro_shows_stage_nodes_typed_ports_and_edges(recipe_gui):
    gui = recipe_gui
    gui.command("ungroup_node: workflow_assyst")
    nodes = gui.nodes()
    paths = Counter(data["import_path"] for data in nodes.values())
    builders = Counter(form_path(f) for f in [*FORMS.values(),
                                              *(f for f, _, _ in CHILDREN.values())])
    stage_nodes = {"sample": 1, "relax": 2, "apply_filter": 2, "perturb": 1, "concatenate": 1,
                   "short_range": 1, "add_short_range": 1, "reference_calculator": 1,
                   "select": 1}
    assert paths == {**builders,
                     **{f"pyiron_assyst.workflow.nodes.{k}": n for k, n in stage_nodes.items()},
                     "pyiron_assyst.workflow.macro.label_and_curate": 1}
    relax = {k: p["types_raw"] for k, p in gui.ports("workflow_assyst_relax_0").items()}
    assert relax.items() >= {
        "structures": "list", "config": "Relaxation", "calculator": "CalculatorConfig",
        "executor": "Executor"}.items()
    assert {k: p["types_raw"] for k, p in gui.ports("workflow_assyst_relax_0", "source").items()
            } == {"structures": "list", "report": "StageReport"}
    assert gui.ports("workflow_assyst_apply_filter_1")["filter"]["types_raw"] == [
        "Filter", "NoneType"]
    prefix = "workflow_assyst_"
    expected = {prefix + e.replace("->", "->" + prefix) for e in STAGE_EDGES}
    expected |= {f"workflow_cfg_{k}.config->{prefix}{target}"
                 for k, targets in CONFIG_EDGES.items() for target in targets}
    expected |= {f"workflow_cfg_{child}.config->workflow_cfg_{parent}.{port}"
                 for child, (_, parent, port) in CHILDREN.items()}
    assert gui.edges() == expected


def test_runs_from_the_widget_with_an_edited_config(recipe_gui):
    gui = recipe_gui
    edited = SampleConfig(spacegroups=(221,), seed=2)
    label = "workflow_cfg_sample_config"
    for port, text in (("spacegroups", "[221]"), ("seed", "2")):  # field by field
        assert gui.widget.unlock_port(label, port)["error"] is None
        assert gui.widget.commit_entry(label, port, text)["error"] is None
    assert gui.widget.commit_entry(label, "max_atoms", "'ten'")["error"] == (
        "'ten' is not a valid int.")  # the field's type, checked as typed
    assert gui.widget.commit_entry(label, "max_atoms", "")["cleared"] is True
    gui.command("ungroup_node: workflow_assyst")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gui.command("run executed")
    outputs = gui.widget.last_run.outputs
    sample_report = outputs["workflow_assyst_sample_0__report"]
    assert (sample_report.n_in, sample_report.n_candidates) == (2, 2)  # two formulas, one group
    trained = outputs["workflow_assyst_label_and_curate_0__training_set"]

    direct = pwf.node(assyst).run(formulas=FORMULAS, **{**CONFIGS, "sample_config": edited})
    assert direct.exception is None
    assert [s.info["uuid"] for s in trained] == [
        s.info["uuid"] for s in direct.outputs["training_set"]]
    assert [s.get_potential_energy() for s in trained if s.calc is not None] == [
        s.get_potential_energy() for s in direct.outputs["training_set"] if s.calc is not None]


def test_config_class_nodes_offer_fields_with_defaults():
    wf = pwf.Workflow("configs")
    wf.sampling = pwf.node(SampleConfig)
    wf.dispatch = pwf.node(Executor)
    wf.relaxation = pwf.node(FullRelax)
    wf.emt = pwf.node(EMT)
    gui = Gui([wf])
    nodes = gui.nodes()
    assert {k: d["import_path"] for k, d in nodes.items()} == {
        "sampling": "pyiron_assyst.stages.sample.SampleConfig",
        "dispatch": "pyiron_assyst.execution.executors.Executor",
        "relaxation": "pyiron_assyst.stages.relax.FullRelax",
        "emt": "pyiron_assyst.calculators.EMT"}
    sampling = gui.ports("sampling")
    assert {k: (p["types"], p["defaults"]) for k, p in sampling.items()
            if k in ("max_atoms", "seed", "symprec", "dim")} == {
        "max_atoms": ("text", "10"), "seed": ("text", "0"), "symprec": ("text", "0.001"),
        "dim": ("text", "3")}
    kind = gui.ports("dispatch")["kind"]
    assert (kind["types"], kind["defaults"]) == ("dropdown", "'process'")
    assert nodes["dispatch"]["target_literal_values"][0] == [f"'{k}'" for k in KINDS]
    assert gui.ports("relaxation")["force_tolerance"]["defaults"] == "0.001"
    assert gui.ports("emt")["fixed_cutoff"]["types"] == "checkbox"
    for label, cls in (("sampling", "SampleConfig"), ("dispatch", "Executor"),
                       ("relaxation", "FullRelax"), ("emt", "EMT")):
        assert gui.ports(label, "source") == {"instance": {"types": "none", "types_raw": cls}}
    gui.flow.close()


def _macro_defaults():
    return {k: p for k, p in inspect.signature(assyst).parameters.items()
            if p.default is not inspect.Parameter.empty}
